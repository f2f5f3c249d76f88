"""Failure classification: what a server pod, a Job or a GPU says about a variant, in words a person can act on.

Pure functions over the JSON shapes the Kubernetes API returns (camelCase dicts). Each failure mode ends the
variant with a CamelCase reason and a message; the operator turns it into a condition and an Event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from quantbench.api.v1alpha1 import Precision

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


class Reason(StrEnum):
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL = "ImagePullBackOff"
    CRASH_LOOP = "CrashLoopBackOff"
    OOM_KILLED = "OOMKilled"
    STARTUP_TIMEOUT = "StartupTimeout"
    JOB_FAILED = "JobFailed"
    RESULT_MISSING = "ResultMissing"
    UNSUPPORTED_PRECISION = "UnsupportedPrecision"
    SERVER_LOST = "ServerLost"


@dataclass(frozen=True)
class Failure:
    reason: Reason
    message: str


# Compute capability by GPU product, matched on the `nvidia.com/gpu.product` label (GPU feature discovery),
# longest key first. FP8 tensor cores need 8.9 (Ada) or 9.0+ (Hopper, Blackwell).
COMPUTE_CAPABILITY: dict[str, tuple[int, int]] = {
    "B200": (10, 0),
    "GB200": (10, 0),
    "H200": (9, 0),
    "H100": (9, 0),
    "GH200": (9, 0),
    "H20": (9, 0),
    "L40S": (8, 9),
    "L40": (8, 9),
    "L4": (8, 9),
    "RTX-4090": (8, 9),
    "A100": (8, 0),
    "A30": (8, 0),
    "A10G": (8, 6),
    "A10": (8, 6),
    "A40": (8, 6),
    "A6000": (8, 6),
    "T4": (7, 5),
    "V100": (7, 0),
}

# Minimum compute capability per precision (vLLM's kernels).
MIN_CAPABILITY: dict[str, tuple[int, int]] = {
    Precision.BF16: (8, 0),
    Precision.FP16: (7, 0),
    Precision.FP8: (8, 9),
    Precision.INT8_W8A8: (7, 5),
    Precision.AWQ_INT4: (7, 5),
    Precision.GPTQ_INT4: (7, 0),
}
MIN_KERNEL_CAPABILITY: dict[str, tuple[int, int]] = {
    "awq_marlin": (8, 0),
    "gptq_marlin": (8, 0),
    "marlin": (8, 0),
    "machete": (9, 0),
}


def compute_capability(product: str | None) -> tuple[int, int] | None:
    """Compute capability of a GPU product label such as ``NVIDIA-A100-SXM4-80GB``; None if unknown."""
    if not product:
        return None
    tokens = set(re.split(r"[-_ ]+", product.upper()))
    for key in sorted(COMPUTE_CAPABILITY, key=len, reverse=True):
        if key in tokens or (("-" in key) and key in product.upper()):
            return COMPUTE_CAPABILITY[key]
    return None


def unsupported_precision(precision: str, kernel: str | None, product: str | None) -> Failure | None:
    """Why ``precision`` (with ``kernel``) cannot run on ``product``, or None when it can (or is unknown)."""
    cc = compute_capability(product)
    if cc is None:
        return None
    need = MIN_CAPABILITY.get(precision, (0, 0))
    if kernel in MIN_KERNEL_CAPABILITY:
        need = max(need, MIN_KERNEL_CAPABILITY[kernel])
    if cc >= need:
        return None
    what = f"{precision} with the {kernel} kernel" if kernel else precision
    return Failure(
        Reason.UNSUPPORTED_PRECISION,
        f"{what} needs compute capability >= {need[0]}.{need[1]}, but {product} has {cc[0]}.{cc[1]}: "
        "run this variant on a newer GPU pool (placement.nodePool) or drop it",
    )


# --------------------------------------------------------------------------------------- server pods


@dataclass(frozen=True)
class PoolInfo:
    """What the nodes of one pool offer (read from Node objects)."""

    name: str
    label: str
    nodes: int
    gpus_per_node: int
    total_gpus: int
    gpu_product: str | None = None


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def pod_ready(pod: dict[str, Any]) -> bool:
    return _conditions(pod).get("Ready", {}).get("status") == "True"


def pod_ready_time(pod: dict[str, Any]) -> str | None:
    cond = _conditions(pod).get("Ready", {})
    return cond.get("lastTransitionTime") if cond.get("status") == "True" else None


def unschedulable_message(pod: dict[str, Any]) -> str | None:
    """The scheduler's message when the pod could not be placed, else None."""
    cond = _conditions(pod).get("PodScheduled", {})
    if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
        return str(cond.get("message") or "unschedulable")
    return None


def classify_unschedulable(
    message: str, pool: PoolInfo | None, pool_name: str | None, gpus: int, gpu_resource: str
) -> Failure | None:
    """A pending server pod: a failure when waiting cannot help, None when it waits for GPUs to free up."""
    if pool_name is not None and (pool is None or pool.nodes == 0):
        label = pool.label if pool else "the pool label"
        return Failure(
            Reason.UNSCHEDULABLE,
            f"no node in pool {pool_name} (no node has {label}={pool_name}); create the pool or fix "
            f"placement.nodePool. Scheduler: {message}",
        )
    if pool is not None and gpus > pool.gpus_per_node:
        return Failure(
            Reason.UNSCHEDULABLE,
            f"not enough GPUs: the server asks for {gpus} {gpu_resource} but nodes in pool {pool.name} have "
            f"at most {pool.gpus_per_node}; lower placement.gpus or use a larger pool. Scheduler: {message}",
        )
    if pool is None and "Insufficient" not in message:
        return Failure(Reason.UNSCHEDULABLE, f"no node matches the server's placement. Scheduler: {message}")
    return None


def _statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])


def classify_pod_failure(pod: dict[str, Any], crash_restarts: int = 3) -> Failure | None:
    """Image pull errors, OOM kills and crash loops of a pod, from its container statuses and phase."""
    name = (pod.get("metadata") or {}).get("name", "?")
    phase = (pod.get("status") or {}).get("phase")
    for cs in _statuses(pod):
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        wreason = waiting.get("reason", "")
        image = cs.get("image", "?")
        if wreason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"):
            return Failure(
                Reason.IMAGE_PULL,
                f"pod {name} cannot pull image {image}: {wreason} {waiting.get('message', '')}".rstrip()
                + "; check server.image and the registry credentials",
            )
        for term in (terminated, last):
            if term.get("reason") == "OOMKilled" or (term.get("exitCode") == 137 and phase == "Failed"):
                return Failure(
                    Reason.OOM_KILLED,
                    f"pod {name} was OOM-killed (exit code {term.get('exitCode', 137)}); lower "
                    "server.maxModelLen or gpuMemoryUtilization, or give the pod more memory",
                )
        restarts = int(cs.get("restartCount") or 0)
        crashing = wreason == "CrashLoopBackOff" or (restarts >= crash_restarts and bool(last))
        if crashing or (phase == "Failed" and terminated):
            term = terminated or last
            return Failure(
                Reason.CRASH_LOOP,
                f"pod {name} keeps exiting (exit code {term.get('exitCode', '?')}, "
                f"{term.get('reason', 'Error')}, {restarts} restarts); read its log: kubectl logs {name}",
            )
    return None


def startup_timed_out(created: datetime, now: datetime, timeout_s: float) -> bool:
    return (now - created).total_seconds() > timeout_s


def startup_timeout_failure(timeout_s: float, pod_name: str | None) -> Failure:
    where = f"; read its log: kubectl logs {pod_name}" if pod_name else ""
    return Failure(
        Reason.STARTUP_TIMEOUT,
        f"the server did not become Ready within server.startupTimeout ({timeout_s:.0f} s){where}",
    )


# --------------------------------------------------------------------------------------------- jobs


def job_finished(job: dict[str, Any]) -> str | None:
    """'Complete' or 'Failed' when the Job has finished, else None."""
    for kind in ("Complete", "Failed"):
        if _conditions(job).get(kind, {}).get("status") == "True":
            return kind
    return None


def job_failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> Failure:
    name = (job.get("metadata") or {}).get("name", "?")
    cond = _conditions(job).get("Failed", {})
    detail = cond.get("message") or cond.get("reason") or "failed"
    for pod in pods:
        for cs in _statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                detail += f"; container exited {term.get('exitCode')} ({term.get('reason', 'Error')})"
                break
    return Failure(Reason.JOB_FAILED, f"job {name} failed: {detail}; read its log: kubectl logs job/{name}")


# --------------------------------------------------------------------------------------- server logs

_WEIGHTS_PATTERNS = (
    re.compile(r"[Mm]odel loading took ([0-9.]+) ?GiB"),
    re.compile(r"model weights took ([0-9.]+) ?GiB"),
    re.compile(r"[Mm]odel weights took ([0-9.]+) ?GiB"),
)


def weights_gib_from_log(log: str) -> float | None:
    """Model weight memory from the vLLM server log ('Model loading took X GiB ...'); the last match wins."""
    found: float | None = None
    for line in log.splitlines():
        for pattern in _WEIGHTS_PATTERNS:
            m = pattern.search(line)
            if m:
                found = float(m.group(1))
                break
    return found
