"""Prompts for a workload: random prompts of exact token lengths, ShareGPT JSON, GSM8K questions, JSONL.

Every loader is seeded: the same source and seed give the same prompts in the same order.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantbench_loadgen.specs import DatasetKind, DatasetSource
from quantbench_loadgen.tokenization import Tokenizer

# ShareGPT filtering, as vllm bench serve does it.
SHAREGPT_MIN_LEN = 4
SHAREGPT_MAX_PROMPT_LEN = 1024
SHAREGPT_MAX_TOTAL_LEN = 2048
GSM8K_DEFAULT_OUTPUT_LEN = 256

WORDS = [
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
    "change",
    "morning",
    "reason",
    "research",
    "girl",
    "guy",
    "moment",
    "air",
    "teacher",
    "force",
    "education",
    "foot",
    "boy",
    "age",
    "policy",
    "music",
    "market",
    "sense",
    "nation",
    "plan",
    "college",
    "interest",
    "death",
    "experience",
    "effect",
    "class",
    "control",
    "care",
    "field",
    "development",
    "role",
    "effort",
    "rate",
    "heart",
    "drug",
    "show",
    "leader",
    "light",
    "voice",
    "wife",
    "police",
    "mind",
    "price",
    "report",
    "decision",
    "son",
    "view",
    "relationship",
    "town",
    "road",
    "arm",
    "difference",
    "value",
    "building",
    "action",
    "model",
    "season",
    "society",
    "tax",
    "director",
    "position",
    "player",
    "record",
    "paper",
    "space",
    "ground",
    "form",
    "event",
    "official",
    "matter",
    "center",
    "couple",
    "site",
    "project",
    "activity",
    "star",
    "table",
    "need",
    "court",
    "oil",
    "situation",
    "cost",
    "industry",
    "figure",
    "street",
    "image",
    "phone",
    "data",
    "picture",
    "practice",
    "piece",
    "land",
    "product",
    "doctor",
    "wall",
    "patient",
    "worker",
    "news",
    "test",
    "movie",
    "north",
    "love",
    "support",
    "technology",
    "step",
    "baby",
    "computer",
    "type",
    "attention",
    "film",
    "tree",
    "source",
    "organization",
    "hair",
    "window",
    "evidence",
    "population",
    "site",
    "garden",
    "river",
    "blue",
    "green",
    "quick",
    "bright",
    "quiet",
    "simple",
    "clear",
    "early",
    "happy",
    "strong",
]


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request's input: the text, the prompt tokens it should count (when known) and max_tokens."""

    text: str
    output_len: int
    prompt_len: int | None = None
    exact_output: bool = False  # ask the server to ignore EOS so that exactly output_len tokens come back


class DatasetError(ValueError):
    """A dataset that cannot be read or yields no prompt; the message names the field or file to fix."""


def random_prompt(tokenizer: Tokenizer, rng: random.Random, length: int, special_tokens: int) -> str:
    """A text of random words that the tokenizer counts as exactly ``length`` tokens, special tokens
    (BOS) included: ``special_tokens`` is how many the server adds to every prompt."""
    target = max(length - special_tokens, 1)
    words = " ".join(rng.choice(WORDS) for _ in range(target + 8))
    ids = tokenizer.encode(words)
    if len(ids) < target:
        raise DatasetError(f"could not build a {length}-token prompt: the tokenizer counts too few tokens")
    cut = target
    text = ""
    for _ in range(12):
        text = tokenizer.decode(ids[:cut])
        n = len(tokenizer.encode(text))
        if n == target:
            return text
        cut += target - n
        if cut < 1 or cut > len(ids):
            break
    raise DatasetError(f"could not build a prompt of exactly {length} tokens (last try: {len(text)} chars)")


def random_prompts(
    tokenizer: Tokenizer, count: int, input_len: int, output_len: int, seed: int, range_ratio: float = 0.0
) -> list[Prompt]:
    """``count`` prompts of ``input_len`` tokens (or uniform in ``[len*(1-r), len*(1+r)]``) that ask for
    exactly ``output_len`` tokens (ignoring EOS)."""
    rng = random.Random(seed)
    special = len(tokenizer.encode("", add_special_tokens=True))
    prompts = []
    for _ in range(count):
        in_len = _draw(rng, input_len, range_ratio)
        out_len = _draw(rng, output_len, range_ratio)
        text = random_prompt(tokenizer, rng, in_len, special)
        prompts.append(Prompt(text=text, output_len=out_len, prompt_len=in_len, exact_output=True))
    return prompts


def _draw(rng: random.Random, length: int, ratio: float) -> int:
    if ratio <= 0:
        return length
    return max(1, rng.randint(int(length * (1 - ratio)), int(length * (1 + ratio))))


def sharegpt_prompts(
    path: Path,
    tokenizer: Tokenizer,
    count: int,
    seed: int,
    *,
    max_prompt_len: int | None,
    output_len: int | None,
) -> list[Prompt]:
    """The first turns of ShareGPT conversations, shuffled by seed and filtered by length like vllm bench
    serve: prompt and completion of at least 4 tokens, prompt ≤ 1024 (or ``max_prompt_len``), total ≤ 2048."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"dataset.path {path}: cannot read ShareGPT JSON ({exc})") from exc
    if not isinstance(data, list):
        raise DatasetError(f"dataset.path {path}: ShareGPT JSON must be a list of conversations")
    pairs = [
        (str(c["conversations"][0]["value"]), str(c["conversations"][1]["value"]))
        for c in data
        if isinstance(c, dict) and isinstance(c.get("conversations"), list) and len(c["conversations"]) >= 2
    ]
    random.Random(seed).shuffle(pairs)
    limit = max_prompt_len or SHAREGPT_MAX_PROMPT_LEN
    prompts: list[Prompt] = []
    for question, answer in pairs:
        if len(prompts) == count:
            break
        p_len = len(tokenizer.encode(question, add_special_tokens=True))
        c_len = output_len or len(tokenizer.encode(answer))
        if p_len < SHAREGPT_MIN_LEN or (output_len is None and c_len < SHAREGPT_MIN_LEN):
            continue
        if p_len > limit or p_len + c_len > SHAREGPT_MAX_TOTAL_LEN:
            continue
        prompts.append(Prompt(question, c_len, p_len, exact_output=output_len is not None))
    return prompts


def gsm8k_prompts(path: Path, count: int, seed: int, *, output_len: int | None) -> list[Prompt]:
    """GSM8K test questions (``test.jsonl`` in the folder, or the file given), shuffled by seed, asked as
    ``Question: ...\\nAnswer:``."""
    file = path / "test.jsonl" if path.is_dir() else path
    rows = _jsonl(file)
    questions = [str(r["question"]) for r in rows if isinstance(r.get("question"), str)]
    if not questions:
        raise DatasetError(f"dataset.path {file}: no 'question' field in any line (is it GSM8K?)")
    return gsm8k_questions_as_prompts(questions, count, seed, output_len=output_len)


# The public GSM8K (the accuracy runner's default source when no local folder is given).
PUBLIC_GSM8K = ("openai/gsm8k", "main")


def public_gsm8k_prompts(count: int, seed: int, *, output_len: int | None) -> list[Prompt]:
    """The public GSM8K test split's questions from the Hub (the `datasets` package, as lm-eval reads it),
    chosen as `gsm8k_prompts` chooses them from a folder holding the same split."""
    try:
        from datasets import load_dataset  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise DatasetError(
            "the public GSM8K needs the datasets package (the accuracy extra): give a GSM8K folder instead"
        ) from exc
    try:
        split = load_dataset(*PUBLIC_GSM8K, split="test")
    except Exception as exc:  # datasets raises many kinds: all mean the dataset cannot be had
        raise DatasetError(
            f"cannot read the public GSM8K ({PUBLIC_GSM8K[0]}, {PUBLIC_GSM8K[1]}) from the Hub ({type(exc).__name__}: "
            f"{exc}); without network access to the Hub, give a GSM8K folder"
        ) from exc
    questions = [str(q) for q in split["question"]]
    return gsm8k_questions_as_prompts(questions, count, seed, output_len=output_len)


def gsm8k_questions_as_prompts(
    questions: list[str], count: int, seed: int, *, output_len: int | None
) -> list[Prompt]:
    """The first ``count`` of the questions shuffled by seed, asked as ``Question: ...\\nAnswer:``."""
    questions = list(questions)
    random.Random(seed).shuffle(questions)
    out = output_len or GSM8K_DEFAULT_OUTPUT_LEN
    return [Prompt(f"Question: {q}\nAnswer:", out, None, output_len is not None) for q in questions[:count]]


def jsonl_prompts(path: Path, count: int, seed: int, *, output_len: int | None) -> list[Prompt]:
    """One prompt per line: ``{"prompt": "...", "output_len": 128}`` (``max_tokens`` is read too); the
    dataset's outputLen overrides the lines' lengths. Shuffled by seed."""
    prompts = []
    for n, row in enumerate(_jsonl(path), start=1):
        text = row.get("prompt")
        if not isinstance(text, str) or not text:
            raise DatasetError(f"dataset.path {path} line {n}: needs a non-empty string 'prompt'")
        line_len = row.get("output_len", row.get("max_tokens"))
        out = output_len or line_len
        if not isinstance(out, int) or out < 1:
            raise DatasetError(
                f"dataset.path {path} line {n}: give 'output_len' (an integer ≥ 1) or set dataset.outputLen"
            )
        prompt_len = row.get("prompt_len")
        prompts.append(
            Prompt(text, out, prompt_len if isinstance(prompt_len, int) else None, exact_output=True)
        )
    random.Random(seed).shuffle(prompts)
    return prompts[:count]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(f"dataset.path {path}: cannot read ({exc.strerror})") from exc
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"dataset.path {path} line {n}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"dataset.path {path} line {n}: each line must be a JSON object")
        rows.append(row)
    return rows


def load_prompts(source: DatasetSource, count: int, seed: int, tokenizer: Tokenizer | None) -> list[Prompt]:
    """``count`` prompts from a dataset source (fewer only when the file holds fewer that qualify)."""
    kind = DatasetKind(source.kind)
    if kind == DatasetKind.RANDOM:
        assert source.input_len is not None and source.output_len is not None
        if tokenizer is None:
            raise DatasetError(
                "a random dataset needs a tokenizer: pass --tokenizer or a server with /tokenize"
            )
        return random_prompts(tokenizer, count, source.input_len, source.output_len, seed, source.range_ratio)
    path = dataset_path(source)
    if kind == DatasetKind.SHAREGPT:
        if tokenizer is None:
            raise DatasetError("a ShareGPT dataset needs a tokenizer to filter by length: pass --tokenizer")
        prompts = sharegpt_prompts(
            path, tokenizer, count, seed, max_prompt_len=source.input_len, output_len=source.output_len
        )
    elif kind == DatasetKind.GSM8K:
        prompts = gsm8k_prompts(path, count, seed, output_len=source.output_len)
    else:
        prompts = jsonl_prompts(path, count, seed, output_len=source.output_len)
    if not prompts:
        raise DatasetError(f"dataset.path {path}: no prompt qualifies (check its format and length filters)")
    return prompts


# The file of a Hugging Face dataset repository that `huggingFace: <repo id>` means, per format, when the
# value names no file (`<repo id>:<file>` names one).
DEFAULT_HUB_FILES: dict[DatasetKind, str] = {
    DatasetKind.SHAREGPT: "ShareGPT_V3_unfiltered_cleaned_split.json",
}


def hub_file(kind: DatasetKind, value: str) -> tuple[str, str]:
    """(repository id, file name) of a `dataset.huggingFace` value such as ``org/name`` or ``org/name:file``."""
    repo, sep, filename = value.partition(":")
    if not sep:
        if kind not in DEFAULT_HUB_FILES:
            raise DatasetError(
                f"dataset.huggingFace {value!r}: name the file for a {kind} dataset as '<repo id>:<file>'"
            )
        filename = DEFAULT_HUB_FILES[kind]
    if repo.count("/") != 1 or not filename:
        raise DatasetError(f"dataset.huggingFace {value!r}: write '<org>/<name>' or '<org>/<name>:<file>'")
    return repo, filename


def download_from_hub(kind: DatasetKind, value: str) -> Path:
    """Fetch a dataset file from the Hugging Face Hub (cached by huggingface_hub); a clear error offline."""
    repo, filename = hub_file(kind, value)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - a dependency of this package
        raise DatasetError("huggingface_hub is not installed: pip install huggingface-hub") from exc
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise DatasetError(
            f"dataset.huggingFace {value}: cannot download {filename} of the dataset {repo} "
            f"({type(exc).__name__}); without network access to the Hub, give dataset.path "
            "(or --dataset-path) to a local copy"
        ) from exc


def dataset_path(source: DatasetSource) -> Path:
    """The local file or folder of a non-random source (ConfigMaps and volumes arrive mounted, with the
    mount path given as ``path``; a `huggingFace` source is downloaded)."""
    if source.path is None:
        if source.hugging_face is not None:
            return download_from_hub(DatasetKind(source.kind), source.hugging_face)
        raise DatasetError("dataset.path is not set: give the file path as seen by the load generator")
    path = Path(source.path)
    if not path.exists():
        raise DatasetError(f"dataset.path {path} does not exist")
    return path


def describe(source: DatasetSource) -> str:
    """A short name of the dataset for results: ``random(512,128)`` or ``sharegpt:/data/x.json``."""
    if source.kind == DatasetKind.RANDOM:
        return f"random({source.input_len},{source.output_len})"
    return f"{source.kind}:{source.path}"
