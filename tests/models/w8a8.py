"""INT8 W8A8 in the compressed-tensors "int-quantized" format that vLLM reads: weights int8, symmetric,
one scale per output channel (round-to-nearest); activations quantized by vLLM per token at run time
(dynamic, symmetric), so the checkpoint holds no activation scales. lm_head stays in 16 bits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tests.models.awq import LINEARS

INT8_MAX = 127


def quantize_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """int8 [out, in] and float32 scale [out, 1] with w ~= q * scale."""
    w = weight.float()
    scale = (w.abs().amax(dim=1, keepdim=True) / INT8_MAX).clamp(min=1e-8)
    q = (w / scale).round().clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def quantize_model(model: nn.Module, scale_dtype: torch.dtype) -> dict[str, dict[str, Tensor]]:
    out: dict[str, dict[str, Tensor]] = {}
    for idx, layer in enumerate(model.model.layers):
        for name in LINEARS:
            q, scale = quantize_per_channel(layer.get_submodule(name).weight.detach())
            out[f"model.layers.{idx}.{name}"] = {"weight": q, "weight_scale": scale.to(scale_dtype)}
    return out


def w8a8_quantization_config() -> dict[str, object]:
    return {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "format": "int-quantized",
                "weights": {
                    "num_bits": 8,
                    "type": "int",
                    "symmetric": True,
                    "strategy": "channel",
                    "dynamic": False,
                    "group_size": None,
                    "block_structure": None,
                    "actorder": None,
                    "observer": "minmax",
                    "observer_kwargs": {},
                },
                "input_activations": {
                    "num_bits": 8,
                    "type": "int",
                    "symmetric": True,
                    "strategy": "token",
                    "dynamic": True,
                    "group_size": None,
                    "block_structure": None,
                    "actorder": None,
                    "observer": None,
                    "observer_kwargs": {},
                },
                "output_activations": None,
            }
        },
        "ignore": ["lm_head"],
        "kv_cache_scheme": None,
        "sparsity_config": {},
    }
