from __future__ import annotations

import pytest

from quantbench.gpus import unsupported_precision
from quantbench.probe.specs import GPU_SPECS, compute_capability, match_gpu_spec


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
        ("NVIDIA-GH200-480GB", (9, 0)),
        ("NVIDIA-H20", (9, 0)),
        ("NVIDIA-GB200", (10, 0)),
        ("NVIDIA-GeForce-RTX-4090", (8, 9)),
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


def test_one_gpu_table() -> None:
    """Rows of one product agree on its compute capability; rows without figures answer no datasheet lookup."""
    by_product: dict[str, set[str]] = {}
    for row in GPU_SPECS:
        assert row.product, row.key
        by_product.setdefault(row.product, set()).add(row.compute_capability)
    assert all(len(ccs) == 1 for ccs in by_product.values()), by_product
    assert match_gpu_spec("Tesla T4") is None  # listed for its compute capability only
    spec = match_gpu_spec("NVIDIA H100 80GB HBM3")
    assert spec is not None and spec.capability == compute_capability("NVIDIA-H100-80GB-HBM3")
