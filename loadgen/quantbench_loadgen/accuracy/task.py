"""The GSM8K task config handed to lm-eval, and where the local dataset lives (pure, no lm-eval import)."""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

TASK_NAME = "gsm8k_local"
DATASET_ENV = "QUANTBENCH_GSM8K_DIR"
# The usual public source, used only when no local folder is given (needs network access to the hub).
PUBLIC_DATASET = ("openai/gsm8k", "main")
FILES = ("train.jsonl", "test.jsonl")


class DatasetError(ValueError):
    """The GSM8K folder is missing or incomplete."""


def resolve_dataset_dir(path: str | None) -> Path | None:
    """The GSM8K folder: the given path, else $QUANTBENCH_GSM8K_DIR; both files must exist there.

    None when neither is set: the public dataset (PUBLIC_DATASET) is read from the hub instead."""
    chosen = path or os.environ.get(DATASET_ENV)
    if not chosen:
        return None
    folder = Path(chosen)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"GSM8K folder {folder} lacks {', '.join(missing)} (needs train.jsonl and test.jsonl)"
        )
    return folder


def dataset_fingerprint(folder: Path) -> str:
    """SHA-256 over train.jsonl then test.jsonl."""
    digest = hashlib.sha256()
    for name in FILES:
        with (folder / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def task_template() -> dict[str, Any]:
    """The shipped task YAML (gsm8k_local.yaml) as a dict."""
    text = resources.files("quantbench_loadgen.accuracy").joinpath("gsm8k_local.yaml").read_text("utf-8")
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def task_config(folder: Path | None, num_fewshot: int, max_gen_tokens: int) -> dict[str, Any]:
    """The task config for lm-eval, reading this GSM8K folder (None: the public dataset from the hub)."""
    config = task_template()
    if folder is None:
        config["dataset_path"], config["dataset_name"] = PUBLIC_DATASET
        config.pop("dataset_kwargs", None)
    else:
        config["dataset_kwargs"] = {
            "data_files": {"train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl")}
        }
    config["num_fewshot"] = num_fewshot
    config["generation_kwargs"] = {**config["generation_kwargs"], "max_gen_toks": max_gen_tokens}
    return config


def reference_answer(answer: str) -> str:
    """The final number of a GSM8K answer ('... #### 1,234' -> '1,234')."""
    return answer.split("####")[-1].strip()
