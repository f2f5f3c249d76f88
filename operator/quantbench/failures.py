"""Failure classification: what a server pod or a Job says about a variant, in words a person can act on.

Pure functions over the JSON shapes the Kubernetes API returns (camelCase dicts). Each failure mode ends the
variant with a CamelCase reason and a message; the operator turns it into a condition and an Event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from quantbench.objects import (
    Condition,
    ContainerState,
    ContainerStateTerminated,
    ContainerStateWaiting,
    Job,
    Pod,
    conditions_of,
    container_statuses,
    name_of,
    pod_phase,
)
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
    SOURCE_UNAVAILABLE = "SourceUnavailable"
    REJECTED = "Rejected"  # the API server refused a child (422, 403: quota, admission, PodSecurity)
    STEP_TIMEOUT = "DeadlineExceeded"
    RUN_TIMEOUT = "RunTimeout"


@dataclass(frozen=True)
class Failure:
    reason: Reason
    message: str


# --------------------------------------------------------------------------------------- server pods


def pod_ready(pod: Pod) -> bool:
    return conditions_of(pod).get("Ready", Condition()).get("status") == "True"


def pod_ready_time(pod: Pod) -> str | None:
    cond = conditions_of(pod).get("Ready", Condition())
    return cond.get("lastTransitionTime") if cond.get("status") == "True" else None


def unschedulable_message(pod: Pod) -> str | None:
    """The scheduler's message when the pod could not be placed, else None."""
    cond = conditions_of(pod).get("PodScheduled", Condition())
    if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
        return str(cond.get("message") or "unschedulable")
    return None


def classify_unschedulable(
    message: str,
    pool: PoolInfo | None,
    pool_name: str | None,
    gpus: int,
    gpu_resource: str,
    cpu: float | None = None,
    memory: float | None = None,
) -> Failure | None:
    """A pending server pod: a failure when waiting cannot help, None when it waits for GPUs (or CPUs and
    memory: ``cpu`` cores and ``memory`` bytes requested) to free up, or for a pool with no node now to
    scale up (the pending pod is what an autoscaler acts on; the caller bounds the wait with
    server.startupTimeout, see no_node_message)."""
    if pool_name is not None and (pool is None or pool.nodes == 0):
        return None
    if pool is not None and cpu is not None and pool.cpu_per_node is not None and cpu > pool.cpu_per_node:
        return Failure(
            Reason.UNSCHEDULABLE,
            f"not enough CPUs: the server asks for {cpu:g} CPUs but nodes in pool {pool.name} have at most "
            f"{pool.cpu_per_node:g}; lower placement.cpu or use a larger pool. Scheduler: {message}",
        )
    if (
        pool is not None
        and memory is not None
        and pool.memory_per_node is not None
        and memory > pool.memory_per_node
    ):
        return Failure(
            Reason.UNSCHEDULABLE,
            f"not enough memory: the server asks for {memory / 2**30:.1f} GiB but nodes in pool {pool.name} "
            f"have at most {pool.memory_per_node / 2**30:.1f} GiB; lower placement.memory or use a larger "
            f"pool. Scheduler: {message}",
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


def no_node_message(pool: PoolInfo | None, pool_name: str | None, label: str) -> str | None:
    """Why a pool cannot place a pod right now because it has no node (scale-to-zero, an autoscaler that has
    not acted yet), or None when it has nodes."""
    if pool_name is None or (pool is not None and pool.nodes > 0):
        return None
    return (
        f"no node in pool {pool_name} (no node has {label}={pool_name}): waiting for the pool to scale up; "
        "otherwise create the pool or fix placement.nodePool"
    )


def classify_pod_failure(pod: Pod, crash_restarts: int = 3) -> Failure | None:
    """Image pull errors, OOM kills and crash loops of a pod, from its container statuses and phase."""
    name = name_of(pod)
    phase = pod_phase(pod)
    for cs in container_statuses(pod):
        state = cs.get("state") or ContainerState()
        last = (cs.get("lastState") or ContainerState()).get("terminated") or ContainerStateTerminated()
        waiting = state.get("waiting") or ContainerStateWaiting()
        terminated = state.get("terminated") or ContainerStateTerminated()
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


def job_finished(job: Job) -> str | None:
    """'Complete' or 'Failed' when the Job has finished, else None."""
    for kind in ("Complete", "Failed"):
        if conditions_of(job).get(kind, Condition()).get("status") == "True":
            return kind
    return None


def last_line(text: str, limit: int = 400) -> str:
    """The last non-empty line of a container's termination message, cut to ``limit`` characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def job_failure(job: Job, pods: list[Pod]) -> Failure:
    name = name_of(job)
    cond = conditions_of(job).get("Failed", Condition())
    detail = cond.get("message") or cond.get("reason") or "failed"
    for pod in pods:
        for cs in container_statuses(pod):
            term = (cs.get("state") or ContainerState()).get("terminated") or ContainerStateTerminated()
            if term and term.get("exitCode", 0) != 0:
                detail += f"; container exited {term.get('exitCode')} ({term.get('reason', 'Error')})"
                said = last_line(term.get("message") or "")
                if said:  # the log's last line (terminationMessagePolicy FallbackToLogsOnError)
                    detail += f": {said}"
                break
    return Failure(Reason.JOB_FAILED, f"job {name} failed: {detail}; read its log: kubectl logs job/{name}")
