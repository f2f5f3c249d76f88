"""Which spec edits change what a run measures (pure).

``historyLimit``, ``schedule`` (with ``timeZone``, ``concurrencyPolicy`` and ``startingDeadlineSeconds``),
``suspend``, ``timeouts`` and ``regression`` decide when runs happen, what is kept and how runs are compared,
not what is measured: an edit of only those does not start a GPU run. The operator records the hash of the
measured part of the spec a run started with (status.measuredSpecHash) and starts a run for a new
generation only when that hash changes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from quantbench.api.v1alpha1 import QuantBenchmarkSpec

UNMEASURED_FIELDS = frozenset(
    {
        "historyLimit",
        "schedule",
        "timeZone",
        "concurrencyPolicy",
        "startingDeadlineSeconds",
        "suspend",
        "timeouts",
        "regression",
    }
)


def measured_spec_hash(spec: QuantBenchmarkSpec) -> str:
    wire = {k: v for k, v in spec.to_wire().items() if k not in UNMEASURED_FIELDS}
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


def changes_measurement(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether two raw specs (as stored) differ in anything but the unmeasured fields."""

    def measured(spec: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (spec or {}).items() if k not in UNMEASURED_FIELDS}

    return measured(old) != measured(new)
