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
TRAIN, TEST = "train.jsonl", "test.jsonl"
FILES = (TRAIN, TEST)
FEWSHOT_FROM_TEST_NOTE = (
    "few-shot examples were drawn from the test split (the GSM8K folder has no train.jsonl); "
    "a question is never its own example"
)


class DatasetError(ValueError):
    """The GSM8K folder is missing or incomplete."""


def resolve_dataset_dir(path: str | None) -> Path | None:
    """The GSM8K folder: the given path, else $QUANTBENCH_GSM8K_DIR; test.jsonl must exist there.

    train.jsonl is optional: without it (e.g. a ConfigMap, whose 1 MiB limit holds GSM8K's test split but
    not its train split) the few-shot examples come from the test split (see `task_config`).
    None when neither is set: the public dataset (PUBLIC_DATASET) is read from the hub instead."""
    chosen = path or os.environ.get(DATASET_ENV)
    if not chosen:
        return None
    folder = Path(chosen)
    if not (folder / TEST).is_file():
        raise DatasetError(
            f"GSM8K folder {folder} lacks {TEST} (it needs test.jsonl, and train.jsonl for few-shot "
            "examples from the train split)"
        )
    return folder


def has_train_split(folder: Path) -> bool:
    return (folder / TRAIN).is_file()


def dataset_fingerprint(folder: Path) -> str:
    """SHA-256 over train.jsonl (when present) then test.jsonl."""
    digest = hashlib.sha256()
    for name in FILES:
        if not (folder / name).is_file():
            continue
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
    """The task config for lm-eval, reading this GSM8K folder (None: the public dataset from the hub).

    A folder without train.jsonl: the few-shot examples are drawn from the test split; lm-eval then draws
    one example more and drops the question being asked, so no question is its own example."""
    config = task_template()
    if folder is None:
        config["dataset_path"], config["dataset_name"] = PUBLIC_DATASET
        config.pop("dataset_kwargs", None)
    elif has_train_split(folder):
        config["dataset_kwargs"] = {"data_files": {"train": str(folder / TRAIN), "test": str(folder / TEST)}}
    else:
        config["dataset_kwargs"] = {"data_files": {"test": str(folder / TEST)}}
        config.pop("training_split", None)
        config["fewshot_split"] = "test"
    config["num_fewshot"] = num_fewshot
    config["generation_kwargs"] = {**config["generation_kwargs"], "max_gen_toks": max_gen_tokens}
    return config


def reference_answer(answer: str) -> str:
    """The final number of a GSM8K answer ('... #### 1,234' -> '1,234')."""
    return answer.split("####")[-1].strip()
