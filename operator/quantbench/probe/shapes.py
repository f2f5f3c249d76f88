"""Decode-step linear-layer shapes derived from a Hugging Face ``config.json``.

One decode step of a dense decoder-only transformer multiplies the current tokens' activations by
every linear weight once: per layer the fused QKV projection, the attention output projection, the
fused gate/up projection and the down projection, then the LM head once. Those matrices are what the
probe times and what the memory floor counts. Embedding lookups read only ``batch`` rows and norms
are vectors, so neither is counted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Keys that mark a mixture-of-experts config: each token reads only some experts, so "every weight
# once" is not the decode floor and the probe's dense step does not model it.
MOE_KEYS: tuple[str, ...] = ("num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size")

# Model types whose MLP is a plain up/down pair (no gate). Everything else is assumed gated
# (Llama, Mistral, Qwen2, Gemma, ...), which is what vLLM fuses into one gate_up projection.
NON_GATED_MODEL_TYPES: frozenset[str] = frozenset(
    {"gpt2", "gpt_neox", "gptj", "opt", "falcon", "bloom", "phi", "starcoder2"}
)


class ModelConfigError(ValueError):
    """A config.json that the probe cannot turn into decode-step shapes; the message names the field."""


class LinearShape(BaseModel):
    """One weight matrix of the decode step: ``out_features x in_features``, repeated ``count`` times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="qkv_proj, o_proj, gate_up_proj, down_proj or lm_head")
    in_features: int = Field(gt=0)
    out_features: int = Field(gt=0)
    count: int = Field(gt=0, description="how many such matrices one decode step reads (layers, or 1)")
    quantized: bool = Field(description="False for the LM head, which quantized checkpoints keep in BF16")

    @property
    def params(self) -> int:
        """Parameters in one matrix."""
        return self.in_features * self.out_features


class ModelShape(BaseModel):
    """The architecture figures the probe needs, and the linear layers they imply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_type: str
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool
    gated_mlp: bool
    dtype: str = Field(description="torch_dtype of the checkpoint, e.g. bfloat16")
    linears: tuple[LinearShape, ...]

    @property
    def params_per_step(self) -> int:
        """Weight parameters one decode step reads (all linears, LM head included)."""
        return sum(linear.params * linear.count for linear in self.linears)


def _require_int(config: Mapping[str, Any], key: str) -> int:
    if key not in config or config[key] is None:
        raise ModelConfigError(
            f"model config: field '{key}' is missing; the probe needs it to size the weights"
        )
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelConfigError(f"model config: field '{key}' must be a positive integer, got {value!r}")
    return value


def _optional_int(config: Mapping[str, Any], key: str, default: int) -> int:
    if config.get(key) is None:
        return default
    return _require_int(config, key)


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs nest the language model under ``text_config``; use it when present."""
    text = config.get("text_config")
    if "hidden_size" not in config and isinstance(text, Mapping):
        merged = dict(text)
        merged.setdefault("model_type", config.get("model_type", "unknown"))
        return merged
    return config


def derive_shape(config: Mapping[str, Any]) -> ModelShape:
    """Turn a parsed HF config into the decode step's linear shapes (pure; raises ModelConfigError)."""
    config = _text_config(config)
    for key in MOE_KEYS:
        if config.get(key):
            raise ModelConfigError(
                f"model config: field '{key}' marks a mixture-of-experts model; the probe models dense "
                "decoders only (every weight read once per step)"
            )
    hidden = _require_int(config, "hidden_size")
    intermediate = _require_int(config, "intermediate_size")
    heads = _require_int(config, "num_attention_heads")
    kv_heads = _optional_int(config, "num_key_value_heads", heads)
    layers = _require_int(config, "num_hidden_layers")
    vocab = _require_int(config, "vocab_size")
    if hidden % heads and config.get("head_dim") is None:
        raise ModelConfigError(
            f"model config: hidden_size {hidden} is not divisible by num_attention_heads {heads}; "
            "set 'head_dim' explicitly"
        )
    head_dim = _optional_int(config, "head_dim", hidden // heads)
    if heads % kv_heads:
        raise ModelConfigError(
            f"model config: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"
        )
    model_type = str(config.get("model_type") or "unknown")
    gated = model_type not in NON_GATED_MODEL_TYPES
    tie = bool(config.get("tie_word_embeddings", False))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")

    linears = (
        LinearShape(
            name="qkv_proj",
            in_features=hidden,
            out_features=(heads + 2 * kv_heads) * head_dim,
            count=layers,
            quantized=True,
        ),
        LinearShape(
            name="o_proj", in_features=heads * head_dim, out_features=hidden, count=layers, quantized=True
        ),
        LinearShape(
            name="gate_up_proj" if gated else "up_proj",
            in_features=hidden,
            out_features=(2 if gated else 1) * intermediate,
            count=layers,
            quantized=True,
        ),
        LinearShape(
            name="down_proj", in_features=intermediate, out_features=hidden, count=layers, quantized=True
        ),
        LinearShape(name="lm_head", in_features=hidden, out_features=vocab, count=1, quantized=False),
    )
    return ModelShape(
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        num_hidden_layers=layers,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        gated_mlp=gated,
        dtype=dtype,
        linears=linears,
    )


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")


def resolve_model_config(ref: str) -> Path:
    """The config.json that ``ref`` names: a file, a model folder, or a Hugging Face model id (fetched with
    huggingface_hub into its cache; offline, from the cache alone when HF_HUB_OFFLINE=1)."""
    path = Path(ref)
    if path.exists() or not HUB_ID.match(ref):
        return path
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise ModelConfigError(
            f"--model-config: {ref} is not a file, and huggingface_hub is not installed to fetch it from "
            "the Hugging Face Hub; give the path of the model's config.json"
        ) from None
    try:
        return Path(hf_hub_download(repo_id=ref, filename="config.json"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelConfigError(
            f"--model-config: cannot fetch config.json of the model {ref} from the Hugging Face Hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); without access "
            "to the Hub (or for a gated model without HF_TOKEN), give the path of a local copy"
        ) from None


def load_model_config(path: Path) -> dict[str, Any]:
    """Read a config.json (or a model directory holding one) with clear errors."""
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelConfigError(f"--model-config: no such file {path}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelConfigError(f"--model-config: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"--model-config: {path} must hold a JSON object")
    return data
