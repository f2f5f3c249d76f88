"""The built images (make images), run with podman as they would run in a pod: non-root, no network, each
doing its job's first step; and the archives imported into a containerd the way a node gets them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quantbench.local.server import free_port
from tests.fixtures.images import NON_ROOT_UID, ROOT, image_ref, load_images, podman_env, podman_run

pytestmark = [pytest.mark.images, pytest.mark.slow]

COMPILERS = "gcc cc c++ g++ clang"
EXAMPLES = ROOT / "examples"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def assert_non_root_without_compilers(ref: str) -> None:
    out = ok(podman_run(ref, ["-c", f"id -u; for c in {COMPILERS}; do command -v $c; done; true"], "sh"))
    assert out.split() == [str(NON_ROOT_UID)], f"uid and compilers found: {out!r}"


def test_operator_image(built_image: Callable[[str], str]) -> None:
    ref = built_image("operator")
    assert "usage: quantbench" in ok(podman_run(ref, ["--help"]))
    specs = sorted(EXAMPLES.glob("*.yaml"))
    out = ok(
        podman_run(
            ref, ["validate", *(f"/examples/{p.name}" for p in specs)], volumes=[(EXAMPLES, "/examples")]
        )
    )
    assert out.count(" ok: ") == len(specs), out
    # The probe Job's init container: `python -m quantbench.probe.lend DIR` (command, not the entrypoint).
    lent = ok(podman_run(ref, ["-c", "python -m quantbench.probe.lend /tmp/src && ls /tmp/src"], "sh"))
    assert lent.split()[-2:] == ["quantbench", "quantbench_loadgen"], lent
    assert_non_root_without_compilers(ref)


def test_jobs_image(built_image: Callable[[str], str]) -> None:
    ref = built_image("jobs")
    assert "usage" in ok(podman_run(ref, ["python", "-m", "quantbench_loadgen.cli", "--help"])).lower()
    assert "usage" in ok(podman_run(ref, ["python", "-m", "quantbench_loadgen.accuracy", "--help"])).lower()
    assert "usage" in ok(podman_run(ref, ["python", "-m", "quantbench_loadgen.publish", "--help"])).lower()
    # lm-eval with the shipped GSM8K task, without torch, beside the load generator; the fidelity step's
    # public GSM8K source (datasets) and its gzip-compressed reference.
    script = (
        "import importlib.util, lm_eval, quantbench_loadgen.accuracy.runner\n"
        "import datasets, quantbench_loadgen.fidelity\n"
        "from quantbench_loadgen.accuracy.task import task_template\n"
        "assert importlib.util.find_spec('torch') is None\n"
        "print(task_template()['task'])\n"
    )
    assert (
        ok(podman_run(ref, ["python", "-c", script], env={"HF_HUB_OFFLINE": "1"})).split()[-1]
        == "gsm8k_local"
    )
    assert_non_root_without_compilers(ref)


def test_vllm_cpu_image(built_image: Callable[[str], str]) -> None:
    ref = built_image("vllm-cpu")
    script = (
        "import torch, vllm, vllm.entrypoints.openai.api_server\n"
        "from vllm.platforms import current_platform\n"
        "assert current_platform.is_cpu(), current_platform\n"
        "print(vllm.__version__, torch.__version__.split('+')[0])\n"
    )
    out = ok(podman_run(ref, ["-c", script], "python3", env={"VLLM_LOGGING_LEVEL": "ERROR"}, timeout=600))
    assert out.split()[-2:] == ["0.32.0", "2.13.0"], out
    for module in ("torchvision", "torchaudio", "torchcodec", "triton"):
        absent = podman_run(ref, ["-c", f"import {module}"], "python3")
        assert absent.returncode != 0, f"{module} is in the image"
    assert_non_root_without_compilers(ref)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Path]:
    """A private containerd (its own root, state and socket under tmp_path; CRI off): its socket."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        pytest.fail("containerd is missing: images/setup.sh installs it")
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{socket}"\n'
    )
    log = (tmp_path / "containerd.log").open("wb")
    process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "containerd.log"
            ).read_text()
            time.sleep(0.2)
        yield socket
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_load_into_containerd(built_image: Callable[[str], str], containerd: Path) -> None:
    names = ["operator", "jobs"]
    refs = [built_image(name) for name in names]
    load_images(containerd, names)
    ctr = ["ctr", "--address", str(containerd), "-n", "k8s.io"]
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout
    assert set(refs) <= set(listed.split()), listed
    again = subprocess.run(
        ["bash", str(ROOT / "images" / "load.sh"), str(containerd), *names],
        capture_output=True,
        text=True,
        check=True,
    )
    assert again.stderr.count("already in") == len(names), again.stderr
    # The runtime runs it as the image's user, like a pod with no securityContext.
    run = subprocess.run(
        [*ctr, "run", "--rm", image_ref("operator"), "qb-images-test", "id", "-u"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.stdout.split() == [str(NON_ROOT_UID)], run


@pytest.mark.vllm
def test_vllm_cpu_image_serves_the_tiny_model(built_image: Callable[[str], str], tmp_path: Path) -> None:
    """The image's entrypoint with server arguments only, as a pod runs it: /health, then a completion."""
    ref = built_image("vllm-cpu")
    models = Path(os.environ.get("QUANTBENCH_MODELS_DIR", ROOT / ".cache" / "models" / "tiny-llama"))
    if not (models / "bf16" / "config.json").is_file():
        pytest.fail(f"no tiny bf16 model in {models}: run make test-models")
    # The image runs as user 10001: it reads the model like a pod reads a model-cache volume, so the copy it
    # gets is readable by others (the model factory writes its weights 0600).
    shutil.copytree(models / "bf16", tmp_path / "models" / "bf16")
    for path in [tmp_path / "models", *(tmp_path / "models").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    models = tmp_path / "models"
    port = free_port()
    name = f"qb-images-vllm-{port}"
    args = [
        "--model", "/models/bf16", "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "1024", "--kv-cache-memory-bytes", str(64 * 2**20),
        "--distributed-executor-backend", "uni", "--dtype", "bfloat16",
    ]  # fmt: skip
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1"}
    argv = ["podman", "run", "--rm", "--name", name, "--network=host", "--volume", f"{models}:/models:ro"]
    argv += [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen([*argv, ref, *args], stdout=log, stderr=subprocess.STDOUT, env=podman_env())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while not healthy(url):
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-4000:]
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-4000:]
            time.sleep(2)
        body = json.dumps({"model": "tiny", "prompt": "Question: 2+2?", "max_tokens": 4}).encode()
        request = urllib.request.Request(f"{url}/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.load(response)
        assert answer["usage"]["completion_tokens"] >= 1, answer
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, env=podman_env(), check=False)
        server.wait(60)
        log.close()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
