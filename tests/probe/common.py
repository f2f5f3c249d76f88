"""Shared inputs for the probe tests: the committed reference files and a tiny dense config."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import quantbench.probe

REFERENCE_DIR = Path(quantbench.probe.__file__).parent / "reference"
LLAMA_CONFIG = REFERENCE_DIR / "llama-3.1-8b-instruct.config.json"
H100_RESULT = REFERENCE_DIR / "h100-sxm.llama-3.1-8b-instruct.json"
H100_MARKDOWN = REFERENCE_DIR / "h100-sxm.llama-3.1-8b-instruct.md"
H200_RESULT = REFERENCE_DIR / "h200.llama-3.1-8b-instruct.json"
H200_MARKDOWN = REFERENCE_DIR / "h200.llama-3.1-8b-instruct.md"
H200_VLLM_RESULT = REFERENCE_DIR / "h200.llama-3.1-8b-instruct.vllm.json"
H200_VLLM_MARKDOWN = REFERENCE_DIR / "h200.llama-3.1-8b-instruct.vllm.md"
# A Python with PyTorch and without QuantBench: the vLLM environment (as the vLLM image), or on the GPU
# machine its own python3.
REPO = Path(__file__).resolve().parents[2]
TORCH_PYTHON = os.environ.get("QUANTBENCH_PROBE_PYTHON", str(REPO / ".venv-vllm" / "bin" / "python"))

# Multi-head attention (no GQA: num_key_value_heads absent), dense MLP, sizes that every kernel accepts
# (in_features multiples of 128 for the 4-bit kernel's groups).
TINY_CONFIG: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_attention_heads": 8,
    "num_hidden_layers": 2,
    "vocab_size": 2048,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}


def llama_config() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LLAMA_CONFIG.read_text())
    return data


def cuda_available() -> bool:
    """PyTorch is importable here and sees a CUDA GPU (the GPU tests run only then)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
