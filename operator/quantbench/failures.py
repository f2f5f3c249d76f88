"""Failure classification: what a server pod or a Job says about a variant, in words a person can act on.

Pure functions over the JSON shapes the Kubernetes API returns (camelCase dicts). Each failure mode ends the
variant with a CamelCase reason and a message; the operator turns it into a condition and an Event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from quantbench.plan import PoolInfo


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


# --------------------------------------------------------------------------------------- server pods


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
