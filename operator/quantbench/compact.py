"""A status that stays small at any spec the CRD allows (pure functions).

etcd refuses objects over 1.5 MiB, and a status patch that fails never records the run: the finishing loop
would retry forever. So:

- a history entry holds key figures and the verdict per variant (``VariantDigest``) and names the ConfigMap
  that keeps the run's full summary, gzip-compressed (``summary.json.gz`` in binaryData, figures to 5
  significant digits: the largest summary the CRD allows, ~3 MiB of JSON, then takes ~0.5 MiB);
- the newest ``DETAILED_ENTRIES`` entries (and a pinned reference run) keep their provenance and regressions,
  at most ``REGRESSIONS_PER_VARIANT`` per variant (the worst); older entries keep neither;
- ``status.summary`` (the last run) is the full summary while it fits ``SUMMARY_BUDGET``; a larger one
  keeps every variant's headline figures, accuracy and verdict, and leaves the per-rate serving and
  per-batch throughput points to the ConfigMap (a note says so).

With 16 variants and ``historyLimit: 100`` the whole status stays under ``STATUS_BUDGET``
(tests/operator/test_compact.py builds the largest spec the CRD allows and checks it).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from quantbench.api.summary import RunSummary
from quantbench.api.v1alpha1 import QuantBenchmarkStatus, Regression, RunRecord, VariantDigest
from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.naming import child_name, labels

STATUS_BUDGET = 1024 * 1024  # bytes of JSON; etcd's limit is 1.5 MiB for the whole object
SUMMARY_BUDGET = 256 * 1024
SUMMARY_KEY = "summary.json.gz"
STEP_SUMMARY = "summary"
CONFIGMAP_BUDGET = 1000 * 1024  # a ConfigMap holds at most 1 MiB
SIGNIFICANT_DIGITS = 5
DETAILED_ENTRIES = 10  # newest history entries that keep provenance and regressions
REGRESSIONS_PER_VARIANT = 5  # regressions a run records per variant (the worst)


def wire_size(model: RunSummary | QuantBenchmarkStatus | RunRecord) -> int:
    return len(json.dumps(model.to_wire(), separators=(",", ":")))


def digest(summary: RunSummary | None) -> list[VariantDigest]:
    if summary is None:
        return []
    return [
        VariantDigest(
            variant=v.variant,
            phase=v.phase,
            verdict=str(v.verdict),
            ms_per_token_bs1=v.ms_per_token_bs1,
            latency_ratio_to_baseline=v.latency_ratio_to_baseline,
            accuracy=v.accuracy.accuracy if v.accuracy else None,
            accuracy_delta_to_baseline=v.accuracy.delta_to_baseline if v.accuracy else None,
        )
        for v in summary.variants
    ]


def compact_record(record: RunRecord, summary: RunSummary | None, config_map: str | None) -> RunRecord:
    """The history entry of a finished run: no embedded summary, its digest and where the full one is."""
    return record.model_copy(
        update={
            "summary": None,
            "best": summary.best if summary else None,
            "variants": digest(summary),
            "summary_config_map": config_map,
        }
    )


def compact_history(history: list[RunRecord], pinned: str | None = None) -> list[RunRecord]:
    """The history as it is written: entries written before compact history (with an embedded summary)
    compacted; past the newest ``DETAILED_ENTRIES`` (the pinned reference run excepted) an entry keeps no
    provenance and no regression details (its key figures, verdicts and summary ConfigMap stay)."""
    out = []
    for i, h in enumerate(history):
        if h.summary is not None:
            h = compact_record(h, h.summary, h.summary_config_map)
        if i >= DETAILED_ENTRIES and h.id != pinned and (h.provenance is not None or h.regressions):
            h = h.model_copy(update={"provenance": None, "regressions": []})
        out.append(h)
    return out


_FIRST = {"outcome": 0, "accuracy": 1, "latency": 2}


def worst_regressions(
    found: list[Regression], per_variant: int = REGRESSIONS_PER_VARIANT
) -> list[Regression]:
    """At most ``per_variant`` regressions per variant, in their order: an outcome, accuracy and batch-1
    latency first, then the largest changes (every serving rate of 16 variants can regress at once)."""
    kept: set[int] = set()
    for variant in dict.fromkeys(r.variant for r in found):
        mine = [(i, r) for i, r in enumerate(found) if r.variant == variant]
        mine.sort(key=lambda ir: (_FIRST.get(ir[1].family, 3), -abs(ir[1].change)))
        kept |= {i for i, _ in mine[:per_variant]}
    return [r for i, r in enumerate(found) if i in kept]


def bounded_summary(summary: RunSummary | None, config_map: str | None) -> RunSummary | None:
    """The summary for status.summary: whole when it fits SUMMARY_BUDGET, else without its point lists."""
    if summary is None or wire_size(summary) <= SUMMARY_BUDGET:
        return summary
    where = f"ConfigMap {config_map} ({SUMMARY_KEY})" if config_map else "the results store"
    rows = [v.model_copy(update={"serving": [], "throughput": []}) for v in summary.variants]
    note = f"serving and throughput points are too large for the status: the full summary is in {where}"
    smaller = summary.model_copy(update={"variants": rows, "notes": [*summary.notes, note]})
    if wire_size(smaller) <= SUMMARY_BUDGET:
        return smaller
    rows = [v.model_copy(update={"evidence": v.evidence[:2]}) for v in rows]
    return smaller.model_copy(update={"variants": rows})


def summary_config_map_name(benchmark: str, run: str) -> str:
    return child_name(benchmark, run, None, STEP_SUMMARY)


def rounded(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """Floats of a JSON value to ``digits`` significant digits (more than any timing here resolves)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def encode_summary(summary: RunSummary) -> str:
    """The summary as gzip-compressed JSON (base64, for binaryData), figures to 5 significant digits."""
    raw = json.dumps(rounded(summary.to_wire()), separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()


def decode_summary(data: str) -> RunSummary:
    return RunSummary.model_validate_json(gzip.decompress(base64.b64decode(data)))


def summary_config_map(owner: Owner, run: str, generation: int, summary: RunSummary) -> Obj | None:
    """The ConfigMap keeping the run's full summary, or None when even compressed it exceeds a ConfigMap."""
    data = encode_summary(summary)
    if len(data) > CONFIGMAP_BUDGET:
        return None
    name = summary_config_map_name(owner.name, run)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, owner, labels(owner.name, run, None, STEP_SUMMARY), generation),
        "binaryData": {SUMMARY_KEY: data},
    }
