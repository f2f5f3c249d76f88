from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantbench.probe.shapes import ModelConfigError, derive_shape, load_model_config

from .common import LLAMA_CONFIG, TINY_CONFIG, llama_config


def test_llama_31_8b_shapes() -> None:
    shape = derive_shape(llama_config())
    assert (shape.hidden_size, shape.intermediate_size, shape.num_hidden_layers) == (4096, 14336, 32)
    assert (shape.num_attention_heads, shape.num_key_value_heads, shape.head_dim) == (32, 8, 128)
    assert shape.vocab_size == 128256 and shape.tie_word_embeddings is False and shape.dtype == "bfloat16"
    by_name = {
        lin.name: (lin.out_features, lin.in_features, lin.count, lin.quantized) for lin in shape.linears
    }
    assert by_name == {
        "qkv_proj": ((32 + 2 * 8) * 128, 4096, 32, True),
        "o_proj": (4096, 4096, 32, True),
        "gate_up_proj": (2 * 14336, 4096, 32, True),
        "down_proj": (4096, 14336, 32, True),
        "lm_head": (128256, 4096, 1, False),
    }
    # 32 layers x 218,103,808 + LM head 525,336,576: the familiar "8B" without the input embedding.
    assert shape.params_per_step == 32 * 218_103_808 + 525_336_576 == 7_504_658_432


def test_tiny_mha_config_defaults_kv_heads_and_head_dim() -> None:
    shape = derive_shape(TINY_CONFIG)
    assert shape.num_key_value_heads == 8 and shape.head_dim == 64
    qkv = shape.linears[0]
    assert (qkv.name, qkv.out_features, qkv.in_features) == ("qkv_proj", 3 * 512, 512)
    assert shape.tie_word_embeddings is True
    assert shape.params_per_step == 2 * (512 * 1536 + 512 * 512 + 512 * 3072 + 1536 * 512) + 512 * 2048


def test_explicit_head_dim_wins() -> None:
    config = {**TINY_CONFIG, "num_attention_heads": 6, "head_dim": 128, "num_key_value_heads": 2}
    shape = derive_shape(config)
    assert shape.linears[0].out_features == (6 + 4) * 128
    assert shape.linears[1].in_features == 6 * 128


def test_non_gated_mlp_model_type() -> None:
    shape = derive_shape({**TINY_CONFIG, "model_type": "gpt_neox"})
    assert shape.gated_mlp is False
    assert shape.linears[2].name == "up_proj" and shape.linears[2].out_features == 1536


def test_text_config_of_multimodal_model() -> None:
    shape = derive_shape({"model_type": "llava", "text_config": TINY_CONFIG})
    assert shape.hidden_size == 512 and shape.model_type == "llama"


@pytest.mark.parametrize("key", ["num_local_experts", "n_routed_experts"])
def test_moe_config_is_rejected_naming_the_field(key: str) -> None:
    with pytest.raises(ModelConfigError, match=key):
        derive_shape({**TINY_CONFIG, key: 8})


@pytest.mark.parametrize("key", ["hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"])
def test_missing_field_is_named(key: str) -> None:
    config = {k: v for k, v in TINY_CONFIG.items() if k != key}
    with pytest.raises(ModelConfigError, match=f"'{key}' is missing"):
        derive_shape(config)


def test_bad_values_are_named() -> None:
    with pytest.raises(ModelConfigError, match="'hidden_size' must be a positive integer"):
        derive_shape({**TINY_CONFIG, "hidden_size": "512"})
    with pytest.raises(ModelConfigError, match="set 'head_dim'"):
        derive_shape({**TINY_CONFIG, "num_attention_heads": 7})
    with pytest.raises(ModelConfigError, match="not a multiple of num_key_value_heads"):
        derive_shape({**TINY_CONFIG, "num_key_value_heads": 3})


def test_load_model_config_file_and_directory(tmp_path: Path) -> None:
    assert load_model_config(LLAMA_CONFIG)["hidden_size"] == 4096
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    assert load_model_config(tmp_path) == TINY_CONFIG


def test_load_model_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="no such file"):
        load_model_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelConfigError, match="not valid JSON"):
        load_model_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ModelConfigError, match="JSON object"):
        load_model_config(bad)
