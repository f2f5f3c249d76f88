"""Reading bench.yaml files into QuantBenchmark models, with errors that name the field and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from quantbench.api import v1alpha1 as api
from quantbench.api.crd import Schema, spec_schema


class SpecError(ValueError):
    """A spec that cannot be used; `problems` holds one line per problem, each naming its field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _walk(data: Any, schema: Schema | None, loc: tuple[int | str, ...]) -> tuple[str, Any, Schema | None]:
    """Follow an error location through the input and the CRD schema.

    Returns the dotted path as a user wrote it, the input at the parent of the last step, and the
    schema of that parent. Steps that pydantic adds for union tags (not present in the input) are skipped.
    """
    path = ""
    parent: Any = None
    parent_schema: Schema | None = None
    for step in loc:
        if isinstance(data, dict) and isinstance(step, str) and step not in data and data.get("type") == step:
            continue  # the tag of a discriminated union
        parent, parent_schema = data, schema
        if isinstance(step, int):
            path += f"[{step}]"
            data = data[step] if isinstance(data, list) and step < len(data) else None
            schema = schema.get("items") if schema else None
        else:
            path += f".{step}" if path else step
            data = data.get(step) if isinstance(data, dict) else None
            schema = (schema.get("properties") or {}).get(step) if schema else None
    return path, parent, parent_schema


def _describe(err: Any, data: dict[str, Any], root: Schema) -> str:
    loc = tuple(err["loc"])
    path, _parent, parent_schema = _walk(data, root, loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = sorted((parent_schema or {}).get("properties", {}))
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"allowed fields: {', '.join(allowed)}"
        return f"{path}: unknown field; {hint}"
    if kind == "missing":
        return f"{path}: required field is missing; add it"
    message = str(err["msg"]).removeprefix("Value error, ")
    for rule in api.CROSS_FIELD_RULES.values():
        if path == "spec" and rule.field_path and message.startswith(rule.message):
            path += rule.field_path  # name the field the apiserver names for the same rule
    if (
        "input" in err
        and kind not in ("value_error", "assertion_error")
        and not isinstance(err["input"], dict)
    ):
        message += f" (got {err['input']!r})"
    return f"{path or '(top level)'}: {message}"


def benchmark_from_dict(doc: Any, source: str) -> api.QuantBenchmark:
    """Validate one resource document; raise SpecError naming each bad field."""
    if not isinstance(doc, dict):
        raise SpecError(source, [f"expected a QuantBenchmark mapping, got {type(doc).__name__}"])
    try:
        return api.QuantBenchmark.model_validate(doc)
    except ValidationError as exc:
        root: Schema = {
            "properties": {
                "apiVersion": {},
                "kind": {},
                "metadata": {"properties": {"name": {}, "namespace": {}}},
                "spec": spec_schema(),
                "status": {},
            }
        }
        problems = [_describe(e, doc, root) for e in exc.errors()]
        raise SpecError(source, problems) from None


def load_benchmarks(path: Path) -> list[api.QuantBenchmark]:
    """Every QuantBenchmark in a YAML file (one or more documents)."""
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(source, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError(source, [f"not valid YAML: {exc}"]) from None
    if not docs:
        raise SpecError(source, ["the file holds no QuantBenchmark"])
    results: list[api.QuantBenchmark] = []
    problems: list[str] = []
    for i, doc in enumerate(docs):
        where = source if len(docs) == 1 else f"{source}#{i + 1}"
        try:
            results.append(benchmark_from_dict(doc, where))
        except SpecError as exc:
            problems.extend(
                exc.problems if len(docs) == 1 else [f"document {i + 1}: {p}" for p in exc.problems]
            )
    if problems:
        raise SpecError(source, problems)
    return results
