"""Writes a model's folders: the checkpoint of each requested precision (BF16, AWQ INT4, INT8 W8A8) of one
float Llama and its tokenizer, each a complete Hugging Face folder vLLM can serve. The float model is the
seeded random tiny Llama (the fast tests) or SmolLM2-135M-Instruct dequantized from its GGUF (the demo)."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from tests.models import awq, w8a8
from tests.models.corpus import corpus_lines
from tests.models.llama import random_llama
from tests.models.manifest import BuiltModel, ModelSpec, Precision, SmolLM2Spec
from tests.models.tokenizer import train_tokenizer

DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


class ModelFactory:
    """Holds one float model and its tokenizer, and writes any precision from them."""

    def __init__(
        self,
        spec: ModelSpec,
        model: LlamaForCausalLM,
        tokenizer: PreTrainedTokenizerBase,
        gsm8k_train: Path | None,
    ) -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.gsm8k_train = gsm8k_train

    @classmethod
    def for_spec(cls, spec: ModelSpec, gsm8k_train: Path | None, cache_dir: Path) -> ModelFactory:
        """The tiny random Llama (tokenizer trained on the corpus), or SmolLM2 loaded from its GGUF file,
        which is fetched into `cache_dir` when not there yet."""
        if isinstance(spec, SmolLM2Spec):
            from tests.models.smollm2 import load_smollm2

            model, tokenizer = load_smollm2(spec, cache_dir)
            return cls(spec, model, tokenizer, gsm8k_train)
        tiny_tokenizer: PreTrainedTokenizerFast = train_tokenizer(
            corpus_lines(gsm8k_train), spec.vocab_size, spec.max_position_embeddings
        )
        return cls(spec, random_llama(spec, tiny_tokenizer), tiny_tokenizer, gsm8k_train)

    def write(self, precision: Precision, out_dir: Path) -> BuiltModel:
        start = time.perf_counter()
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if precision is Precision.BF16:
            vllm_args = self._write_bf16(tmp)
        elif precision is Precision.AWQ_INT4:
            vllm_args = self._write_awq(tmp)
        elif precision is Precision.W8A8_INT8:
            vllm_args = self._write_w8a8(tmp)
        else:  # pragma: no cover - Precision is closed
            raise ValueError(f"no writer for {precision}")
        self.tokenizer.save_pretrained(str(tmp))
        self.model.generation_config.save_pretrained(str(tmp))
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
        size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
        return BuiltModel(
            precision=precision,
            path=out_dir.name,
            vllm_args=vllm_args,
            size_bytes=size,
            build_seconds=round(time.perf_counter() - start, 2),
        )

    # -- precisions -------------------------------------------------------------------------------------

    def _write_bf16(self, out: Path) -> list[str]:
        tensors = {name: t.to(torch.bfloat16) for name, t in self._float_tensors(self.model).items()}
        self._save(out, tensors, torch.bfloat16, quantization_config=None)
        return ["--dtype", "bfloat16"]

    def _write_awq(self, out: Path) -> list[str]:
        model = copy.deepcopy(self.model)
        awq.apply_awq_scales(model, self.calibration_ids(), self.spec.awq_group_size)
        quantized = awq.quantize_model(model, self.spec.awq_group_size)
        tensors = self._merge(model, quantized, torch.float16)
        self._save(out, tensors, torch.float16, awq.awq_quantization_config(self.spec.awq_group_size))
        return ["--quantization", "awq", "--dtype", "float16"]

    def _write_w8a8(self, out: Path) -> list[str]:
        quantized = w8a8.quantize_model(self.model, torch.bfloat16)
        tensors = self._merge(self.model, quantized, torch.bfloat16)
        self._save(out, tensors, torch.bfloat16, w8a8.w8a8_quantization_config())
        return ["--dtype", "bfloat16"]

    # -- internals --------------------------------------------------------------------------------------

    def calibration_ids(self) -> Tensor:
        """[samples, tokens] of the training text, in file order (so builds are reproducible)."""
        need = self.spec.calibration_samples * self.spec.calibration_tokens
        ids: list[int] = []
        for line in corpus_lines(self.gsm8k_train):
            ids.extend(self.tokenizer(line, add_special_tokens=False)["input_ids"])
            if len(ids) >= need:
                break
        while len(ids) < need:  # tiny corpus: repeat it
            ids.extend(ids[: need - len(ids)])
        return torch.tensor(ids[:need]).reshape(self.spec.calibration_samples, self.spec.calibration_tokens)

    @staticmethod
    def _float_tensors(model: nn.Module) -> dict[str, Tensor]:
        """The state dict as a checkpoint stores it: a tied LM head is the embedding, not a second copy."""
        tensors = dict(model.state_dict())
        if getattr(model.config, "tie_word_embeddings", False):
            tensors.pop("lm_head.weight", None)
        return tensors

    @staticmethod
    def _merge(
        model: nn.Module, quantized: dict[str, dict[str, Tensor]], dtype: torch.dtype
    ) -> dict[str, Tensor]:
        """The quantized linears' tensors plus every other parameter in `dtype`."""
        tensors: dict[str, Tensor] = {}
        for name, t in ModelFactory._float_tensors(model).items():
            module = name.rsplit(".", 1)[0]
            if module not in quantized:
                tensors[name] = t.to(dtype)
        for module, parts in quantized.items():
            for part, t in parts.items():
                tensors[f"{module}.{part}"] = t
        return tensors

    def _save(
        self,
        out: Path,
        tensors: dict[str, Tensor],
        dtype: torch.dtype,
        quantization_config: dict[str, object] | None,
    ) -> None:
        save_file(
            {k: v.contiguous() for k, v in sorted(tensors.items())},
            str(out / "model.safetensors"),
            metadata={"format": "pt"},
        )
        config = self.model.config.to_dict()
        config["architectures"] = ["LlamaForCausalLM"]
        config["dtype"] = DTYPE_NAMES[dtype]
        config.pop("torch_dtype", None)
        if quantization_config is not None:
            config["quantization_config"] = quantization_config
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
