from __future__ import annotations

import pytest

from quantbench.gpus import compute_capability, unsupported_precision


@pytest.mark.parametrize(
    ("product", "cc"),
    [
        ("NVIDIA-H100-80GB-HBM3", (9, 0)),
        ("NVIDIA-H200", (9, 0)),
        ("NVIDIA-A100-SXM4-80GB", (8, 0)),
        ("NVIDIA-L40S", (8, 9)),
        ("NVIDIA-L4", (8, 9)),
        ("NVIDIA-A10G", (8, 6)),
        ("Tesla-T4", (7, 5)),
        ("Mystery-GPU", None),
        (None, None),
    ],
)
def test_compute_capability(product: str | None, cc: tuple[int, int] | None) -> None:
    assert compute_capability(product) == cc


def test_fp8_needs_ada_or_hopper() -> None:
    why = unsupported_precision("fp8", "fp8", "NVIDIA-A100-SXM4-80GB")
    assert why is not None and "8.9" in why and "8.0" in why and "nodePool" in why
    assert unsupported_precision("fp8", "fp8", "NVIDIA-H100-80GB-HBM3") is None
    assert unsupported_precision("fp8", "fp8", "NVIDIA-L40S") is None
    assert unsupported_precision("bf16", None, "Tesla-T4") is not None
    assert unsupported_precision("awq-int4", "awq", "Tesla-T4") is None
    assert unsupported_precision("awq-int4", "awq_marlin", "Tesla-T4") is not None
    assert unsupported_precision("fp8", "fp8", None) is None  # unknown GPU: let the server try
