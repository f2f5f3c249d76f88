"""The demo's model: SmolLM2-135M-Instruct built from its GGUF (BF16), quantized by the project's own AWQ and
W8A8 quantizers, and each checkpoint served by vLLM CPU and answering a question it knows."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from quantbench.local.server import free_port, start_server
from tests.fixtures.vllm import (
    DEFAULT_PYTHON,
    ROOT,
    build_models,
    process_tree_pss_bytes,
    server_command,
    vllm_env,
)
from tests.models.manifest import Manifest, Precision, SmolLM2Spec

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

DEMO_MODELS_DIR = Path(
    os.environ.get("QUANTBENCH_DEMO_MODELS_DIR", ROOT / ".cache" / "models" / "smollm2-135m")
)


@pytest.fixture(scope="module")
def smollm2() -> Manifest:
    if not DEFAULT_PYTHON.exists():
        pytest.fail("no .venv-vllm: run `make vllm-env` first", pytrace=False)
    return build_models(DEFAULT_PYTHON, DEMO_MODELS_DIR, list(Precision), model="smollm2")


def test_checkpoints_are_smollm2_in_three_precisions(smollm2: Manifest) -> None:
    assert isinstance(smollm2.spec, SmolLM2Spec)
    for precision in Precision:
        folder = smollm2.model_dir(DEMO_MODELS_DIR, precision)
        config = json.loads((folder / "config.json").read_text())
        assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)
        assert config["tie_word_embeddings"] is True
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
        assert (
            "<|im_start|>" in str(tokenizer.get("chat_template", ""))
            or (folder / "chat_template.jinja").is_file()
        )
    quant = json.loads((smollm2.model_dir(DEMO_MODELS_DIR, Precision.AWQ_INT4) / "config.json").read_text())
    assert quant["quantization_config"] == {
        "quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True, "version": "gemm",
        "modules_to_not_convert": None,
    }  # fmt: skip
    sizes = {p: smollm2.models[p].size_bytes for p in Precision}
    assert sizes[Precision.AWQ_INT4] < sizes[Precision.W8A8_INT8] < sizes[Precision.BF16]


def _chat(url: str, model: str, question: str) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 24,
        "temperature": 0,
    }
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return str(json.loads(response.read())["choices"][0]["message"]["content"])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("precision", list(Precision), ids=lambda p: p.value)
def test_each_checkpoint_serves_and_knows_a_fact(
    smollm2: Manifest, precision: Precision, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = smollm2.model_dir(DEMO_MODELS_DIR, precision)
    port = free_port()
    name = f"smollm2-{precision.value}"
    # -O0 as in examples/local.yaml: with torch.compile (vLLM CPU 0.32's default) this model answers the chat
    # below in French nonsense, and the server takes ~5x longer to start.
    cmd = server_command(DEFAULT_PYTHON, folder, name, port, [*smollm2.models[precision].vllm_args, "-O0"])
    cmd[cmd.index("--max-model-len") + 1] = "2048"
    server = start_server(name, cmd, tmp_path / "server.log", env=vllm_env(), port=port, cwd=ROOT)
    try:
        started = server.wait_ready(600, poll_s=1.0)
        memory = process_tree_pss_bytes(server.pid)
        t0 = time.perf_counter()
        answer = _chat(server.url, name, "What is the capital of France?")
        seconds = time.perf_counter() - t0
    finally:
        server.stop()
    with capsys.disabled():
        print(
            f"\n{name}: ready in {started:.1f} s, {memory / 2**30:.2f} GiB PSS, answer in {seconds:.2f} s: {answer!r}"
        )
    assert "Paris" in answer, answer
