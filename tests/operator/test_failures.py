from __future__ import annotations

from typing import Any

from quantbench.failures import (
    Reason,
    classify_pod_failure,
    classify_unschedulable,
    job_failure,
    job_finished,
    no_node_message,
)
from quantbench.plan import PoolInfo

H100 = PoolInfo("h100", "quantbench.dev/pool", 2, 8, "NVIDIA-H100-80GB-HBM3")


def pod(
    statuses: list[dict[str, Any]], phase: str = "Running", conditions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "p"},
        "status": {"phase": phase, "containerStatuses": statuses, "conditions": conditions or []},
    }


def test_image_pull() -> None:
    f = classify_pod_failure(
        pod(
            [
                {
                    "image": "vllm:nope",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
                }
            ]
        )
    )
    assert (
        f is not None
        and f.reason == Reason.IMAGE_PULL
        and "vllm:nope" in f.message
        and "server.image" in f.message
    )
    f = classify_pod_failure(pod([{"state": {"waiting": {"reason": "ErrImagePull"}}}]))
    assert f is not None and f.reason == Reason.IMAGE_PULL


def test_oom_and_crash_loop() -> None:
    oom = pod([{"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}], phase="Failed")
    f = classify_pod_failure(oom)
    assert f is not None and f.reason == Reason.OOM_KILLED and "maxModelLen" in f.message
    restarted_oom = pod(
        [
            {
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ]
    )
    assert (classify_pod_failure(restarted_oom) or f).reason == Reason.OOM_KILLED
    loop = pod(
        [
            {
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
            }
        ]
    )
    f = classify_pod_failure(loop)
    assert f is not None and f.reason == Reason.CRASH_LOOP and "exit code 1" in f.message
    exited = pod([{"state": {"terminated": {"reason": "Error", "exitCode": 3}}}], phase="Failed")
    assert (classify_pod_failure(exited) or f).reason == Reason.CRASH_LOOP
    assert (
        classify_pod_failure(
            pod([{"restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1}}}])
        )
        is None
    )
    assert classify_pod_failure(pod([{"state": {"running": {}}}])) is None


def test_unschedulable() -> None:
    msg = "0/9 nodes are available: 9 node(s) didn't match Pod's node affinity/selector."
    # A pool with no node now may scale up (the pending pod is what the autoscaler acts on): wait.
    assert classify_unschedulable(msg, None, "h300", 1, "nvidia.com/gpu") is None
    why = no_node_message(None, "h300", "karpenter.sh/nodepool")
    assert why is not None and "no node in pool h300" in why and "karpenter.sh/nodepool=h300" in why
    assert no_node_message(H100, "h100", "quantbench.dev/pool") is None
    f = classify_unschedulable(
        "0/9 nodes are available: 2 Insufficient nvidia.com/gpu.", H100, "h100", 9, "nvidia.com/gpu"
    )
    assert f is not None and "not enough GPUs" in f.message and "at most 8" in f.message
    # A CPU server larger than any node of its pool waits for nothing; one that fits waits for room.
    cpu_pool = PoolInfo(
        "cpu", "quantbench.dev/pool", 2, 0, None, cpu_per_node=32, memory_per_node=128 * 2**30
    )
    f = classify_unschedulable("Insufficient cpu", cpu_pool, "cpu", 0, "nvidia.com/gpu", cpu=64, memory=2**30)
    assert f is not None and "not enough CPUs" in f.message and "at most 32" in f.message
    f = classify_unschedulable(
        "Insufficient memory", cpu_pool, "cpu", 0, "nvidia.com/gpu", cpu=4, memory=2**40
    )
    assert f is not None and "1024.0 GiB" in f.message and "at most 128.0 GiB" in f.message
    assert classify_unschedulable("Insufficient cpu", cpu_pool, "cpu", 0, "x", cpu=16, memory=2**34) is None
    # GPUs exist but are busy: wait
    assert (
        classify_unschedulable(
            "0/9 nodes are available: 2 Insufficient nvidia.com/gpu.", H100, "h100", 4, "nvidia.com/gpu"
        )
        is None
    )


def test_jobs() -> None:
    done = {"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    failed = {
        "metadata": {"name": "j"},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
    }
    assert job_finished(done) == "Complete" and job_finished(failed) == "Failed"
    assert job_finished({"status": {}}) is None
    f = job_failure(
        failed, [pod([{"state": {"terminated": {"exitCode": 2, "reason": "Error"}}}], phase="Failed")]
    )
    assert f.reason == Reason.JOB_FAILED and "BackoffLimitExceeded" in f.message and "exited 2" in f.message
    # What the Job said last (its log, as the termination message) is in the reason.
    said = "quantbench-loadgen ...\nerror: result is 2000000 bytes gzip-compressed; ask for fewer prompts\n"
    terminated = {"exitCode": 1, "reason": "Error", "message": said}
    f = job_failure(failed, [pod([{"state": {"terminated": terminated}}], phase="Failed")])
    assert f.message.endswith(
        "container exited 1 (Error): error: result is 2000000 bytes gzip-compressed; ask for fewer prompts; "
        "read its log: kubectl logs job/j"
    )
