from __future__ import annotations

import pytest

from quantbench.probe.floors import (
    activation_bytes,
    memory_floor_seconds,
    step_floor_seconds,
    step_flops,
    weight_bytes,
)
from quantbench.probe.precisions import WEIGHT_FORMATS, parse_precisions
from quantbench.probe.shapes import derive_shape
from quantbench.probe.specs import gpu_spec_by_key, match_gpu_spec

from .common import TINY_CONFIG, llama_config

LLAMA = derive_shape(llama_config())
LM_HEAD_BYTES = 128256 * 4096 * 2
LAYER_PARAMS = 32 * 218_103_808


def test_weight_bytes_per_precision_llama() -> None:
    assert weight_bytes(LLAMA, "bf16") == 2 * 7_504_658_432 == 15_009_316_864
    # FP8: one byte per weight + a float32 scale per output channel; the LM head stays BF16.
    channels = 32 * (6144 + 4096 + 28672 + 4096)
    assert weight_bytes(LLAMA, "fp8") == LAYER_PARAMS + 4 * channels + LM_HEAD_BYTES == 8_035_500_032
    # INT4 g128: half a byte per weight + 2.5 bytes per group of 128 inputs per output channel.
    groups = 32 * (32 * 6144 + 32 * 4096 + 32 * 28672 + 112 * 4096)
    assert weight_bytes(LLAMA, "int4") == LAYER_PARAMS / 2 + 2.5 * groups + LM_HEAD_BYTES == 4_676_648_960


def test_matrix_bytes_rounds_partial_groups_up() -> None:
    fmt = WEIGHT_FORMATS["int4"]
    assert fmt.matrix_bytes(in_features=200, out_features=8) == 200 * 8 / 2 + 2 * 8 * 2.5


def test_memory_floor_is_bytes_over_bandwidth() -> None:
    h100 = gpu_spec_by_key("h100-sxm")
    assert memory_floor_seconds(LLAMA, "bf16", h100.memory_bandwidth_bytes_per_s) == pytest.approx(
        4.4804e-3, rel=1e-4
    )
    assert memory_floor_seconds(LLAMA, "int4", 3.0e12) == pytest.approx(4_676_648_960 / 3.0e12)
    with pytest.raises(ValueError):
        memory_floor_seconds(LLAMA, "bf16", 0)


def test_step_floor_memory_bound_at_batch_1_compute_bound_at_4096() -> None:
    kwargs = {"bandwidth_bytes_per_s": 3.35e12, "bf16_flops": 989.4e12, "fp8_flops": 1978.9e12}
    at_1 = step_floor_seconds(LLAMA, "bf16", 1, **kwargs)
    assert at_1 == pytest.approx((15_009_316_864 + activation_bytes(LLAMA, 1)) / 3.35e12)
    at_4096 = step_floor_seconds(LLAMA, "bf16", 4096, **kwargs)
    assert at_4096 == pytest.approx(2 * 4096 * 7_504_658_432 / 989.4e12)
    # FP8 runs the quantized linears at the FP8 rate, the LM head at the BF16 rate.
    quantized, plain = step_flops(LLAMA, 4096)
    assert plain == 2 * 4096 * 128256 * 4096
    fp8 = step_floor_seconds(LLAMA, "fp8", 4096, **kwargs)
    assert fp8 == pytest.approx(quantized / 1978.9e12 + plain / 989.4e12)
    # Weight-only INT4 multiplies in BF16: same compute floor as BF16 once compute-bound.
    assert step_floor_seconds(LLAMA, "int4", 4096, **kwargs) == pytest.approx(at_4096)


def test_step_floor_errors() -> None:
    with pytest.raises(ValueError, match="FP8 peak"):
        step_floor_seconds(LLAMA, "fp8", 1, bandwidth_bytes_per_s=2e12, bf16_flops=312e12, fp8_flops=None)
    with pytest.raises(ValueError, match="batch_size"):
        step_floor_seconds(LLAMA, "bf16", 0, bandwidth_bytes_per_s=2e12, bf16_flops=312e12, fp8_flops=None)


def test_activation_bytes_scale_with_batch() -> None:
    tiny = derive_shape(TINY_CONFIG)
    per_token = 2 * ((512 + 1536) + (512 + 512) + (512 + 3072) + (1536 + 512)) + (512 + 2048)
    assert activation_bytes(tiny, 1) == 2 * per_token
    assert activation_bytes(tiny, 64) == 64 * activation_bytes(tiny, 1)


@pytest.mark.parametrize(
    ("device_name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA GH200 480GB", "gh200"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L40", "l40"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA B200", "b200"),
    ],
)
def test_gpu_spec_matching(device_name: str, key: str) -> None:
    spec = match_gpu_spec(device_name)
    assert spec is not None and spec.key == key


def test_unknown_gpu() -> None:
    assert match_gpu_spec("Some Future Accelerator") is None
    with pytest.raises(ValueError, match=r"known: .*h100-sxm"):
        gpu_spec_by_key("x9000")
    assert not gpu_spec_by_key("a100-40gb").supports_fp8


def test_parse_precisions() -> None:
    assert parse_precisions("int4") == ("bf16", "int4")
    assert parse_precisions("fp8, bf16") == ("bf16", "fp8")
    with pytest.raises(ValueError, match="--precisions"):
        parse_precisions("fp4")
