"""Committed probe results (``reference/``) that reports can quote when a run has no probe of its own."""

from __future__ import annotations

from pathlib import Path

from .result import ProbeResult

REFERENCE_DIR = Path(__file__).parent / "reference"
# Llama-3.1-8B-Instruct's shapes on one H100 SXM5 80GB (rowwise-scaled FP8, tinygemm INT4).
H100_LLAMA_31_8B = "h100-sxm.llama-3.1-8b-instruct"
# The same, FP8 with per-tensor scales (cuBLASLt path) instead of rowwise.
H100_LLAMA_31_8B_FP8_TENSORWISE = "h100-sxm.llama-3.1-8b-instruct.fp8-tensorwise"
# The same two on one H200 SXM 141GB.
H200_LLAMA_31_8B = "h200.llama-3.1-8b-instruct"
H200_LLAMA_31_8B_FP8_TENSORWISE = "h200.llama-3.1-8b-instruct.fp8-tensorwise"
# The H200 again with vLLM 0.26.0's own kernels (CUTLASS FP8, Marlin 4-bit as AWQ-Marlin), as a probe run in
# the vLLM image times them; and its FP8 with per-tensor scales.
H200_LLAMA_31_8B_VLLM = "h200.llama-3.1-8b-instruct.vllm"
H200_LLAMA_31_8B_VLLM_FP8_TENSORWISE = "h200.llama-3.1-8b-instruct.vllm.fp8-tensorwise"


def reference_names() -> list[str]:
    """Names of the committed results (file names without .json; config files excluded)."""
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json") if not p.name.endswith(".config.json"))


def load_reference(name: str = H100_LLAMA_31_8B) -> ProbeResult:
    """A committed ProbeResult by name; raises KeyError listing the names that exist."""
    path = REFERENCE_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no probe reference {name!r}; committed: {', '.join(reference_names())}")
    return ProbeResult.load(path)
