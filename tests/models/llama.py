"""The random-init Llama-architecture model: a fixed seed makes every build the same bytes."""

from __future__ import annotations

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tests.models.manifest import TinyLlamaSpec
from tests.models.tokenizer import stop_token_ids


def llama_config(spec: TinyLlamaSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    if len(tokenizer) > spec.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than vocab_size={spec.vocab_size}")
    if spec.hidden_size % spec.num_attention_heads:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")
    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_llama(spec: TinyLlamaSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A float32 model with transformers' own initialisation, seeded."""
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(llama_config(spec, tokenizer))
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    return model
