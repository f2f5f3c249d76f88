"""The server of a variant placed with `gpus: 0`, run as its Deployment says, on the pinned vLLM CPU build:
the container's arguments (no GPU flags, the KV cache sized from the memory request) and its CPU
environment (no core binding, one OpenMP thread per requested core) start a server that answers.
Only the listen address (loopback) and port differ from the pod's."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.local.server import free_port, start_server
from quantbench.manifests.common import Owner
from quantbench.manifests.security import HOME
from quantbench.manifests.server import deployment
from tests.fixtures.vllm import SERVER_MODULE, VllmServerPool
from tests.models.manifest import Manifest, Precision

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_cpu_deployments_command_serves(
    tiny_models: Manifest, vllm_pool: VllmServerPool, tmp_path: Path
) -> None:
    model = str(tiny_models.model_dir(vllm_pool.models_dir, Precision.BF16))
    spec = QuantBenchmarkSpec.model_validate(
        {
            "model": model,
            "baseline": "bf16",
            "variants": [
                {"name": "bf16", "precision": "bf16", "placement": {"gpus": 0, "cpu": "1", "memory": "6Gi"}}
            ],
            "workloads": [{"name": "latency", "type": "latency"}],
        }
    )
    pod = deployment(spec, spec.variants[0], Owner("b", "ns", "u"), "r1", 1)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = list(container["args"])
    assert args[args.index("--kv-cache-memory-bytes") + 1] == str(2**30)  # a quarter of 6Gi, whole GiB
    port = free_port()
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1", "HOME": HOME}
    del env["HOME"]  # the pod's emptyDir home; the local process keeps its own
    env |= {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "server.log"
    server = start_server("cpu", [str(vllm_pool.python), "-m", SERVER_MODULE, *args], log, env=env, port=port)
    try:
        seconds = server.wait_ready(vllm_pool.timeout_s, poll_s=1.0)
        body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 4}).encode()
        request = urllib.request.Request(
            f"{server.url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["usage"]["completion_tokens"] == 4
        print(f"CPU-placement server ready in {seconds:.1f} s")
    finally:
        server.stop()
