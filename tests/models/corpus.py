"""Training text for the tokenizer: GSM8K train questions and answers when the data set is on disk, plus a
small built-in corpus, so that lm-eval's GSM8K prompts and chat requests tokenize into sensible pieces."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

GSM8K_ENV = "QUANTBENCH_GSM8K_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_GSM8K_DIR = REPO_ROOT.parent / "shared" / "datasets" / "gsm8k"

# Always part of the corpus (and all of it where GSM8K is absent): the shapes of text the test servers
# see, i.e. few-shot math prompts, chat turns, JSON and code-like strings, digits and punctuation.
BUILTIN_CORPUS = """\
Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.
How many clips did Natalia sell altogether in April and May?
Answer: Natalia sold 48/2 = <<48/2=24>>24 clips in May.
Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
#### 72

Question: Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.
How much did she earn?
Answer: Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.
Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.
#### 10

The quick brown fox jumps over the lazy dog. A benchmark compares the latency, throughput and accuracy
of a language model served in several precisions: bf16, fp8, int8 and int4 weights.
You are a helpful assistant. Answer the user's question step by step, then give the final number.
What is the capital of France? The capital of France is Paris.
Write a short poem about the sea. The sea is wide, the sea is deep, its waves will rock the world to sleep.
{"role": "user", "content": "Hello! How are you today?"} {"role": "assistant", "content": "I am fine."}
def add(a: int, b: int) -> int:
    return a + b
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 40 50 60 70 80 90 100 1000 2024 3.14 0.5 -7
+ - * / = < > ( ) [ ] { } % $ # @ ! ? . , ; : ' " ` ~ ^ & | \\ _
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July
August September October November December hours minutes seconds dollars cents apples oranges books
"""


def gsm8k_train_path(gsm8k_dir: str | Path | None = None) -> Path | None:
    """The GSM8K train split to learn from: the argument, else $QUANTBENCH_GSM8K_DIR, else the shared
    data set beside the repository; None where none of them exists."""
    candidates: list[Path] = []
    if gsm8k_dir is not None:
        candidates.append(Path(gsm8k_dir))
    elif os.environ.get(GSM8K_ENV):
        candidates.append(Path(os.environ[GSM8K_ENV]))
    else:
        candidates.append(DEFAULT_GSM8K_DIR)
    for directory in candidates:
        path = directory / "train.jsonl" if directory.is_dir() else directory
        if path.is_file():
            return path
    if gsm8k_dir is not None:
        raise FileNotFoundError(f"--gsm8k-dir {gsm8k_dir}: no train.jsonl there")
    return None


def corpus_lines(gsm8k_train: Path | None) -> Iterator[str]:
    yield from BUILTIN_CORPUS.splitlines()
    if gsm8k_train is None:
        return
    with gsm8k_train.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield f"Question: {row['question']}"
                yield f"Answer: {row['answer']}"
            except (ValueError, KeyError) as exc:
                raise ValueError(
                    f"{gsm8k_train}:{number}: not a GSM8K row with question/answer: {exc}"
                ) from exc


def corpus_fingerprint(gsm8k_train: Path | None) -> str:
    digest = hashlib.sha256(BUILTIN_CORPUS.encode())
    if gsm8k_train is not None:
        digest.update(gsm8k_train.read_bytes())
    return digest.hexdigest()
