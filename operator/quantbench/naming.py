"""Deterministic names and labels of the objects a QuantBenchmark run creates.

A child's name is a pure function of (benchmark, run, variant, step): an operator that restarts finds the
objects it made before instead of making new ones. Names are DNS-1035 labels (lower case letters, digits
and '-', starting with a letter, at most 63 characters) so that they are valid for every kind used
(Deployments, Services, Jobs, ConfigMaps, RBAC objects). A name that would be longer keeps a readable
prefix and ends with a hash of the full name, so two different tuples never share a truncated name.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from quantbench.api.v1alpha1 import GROUP

LABEL_BENCHMARK = f"{GROUP}/benchmark"
LABEL_RUN = f"{GROUP}/run"
LABEL_VARIANT = f"{GROUP}/variant"
LABEL_STEP = f"{GROUP}/step"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "quantbench-operator"
ANNOTATION_GENERATION = f"{GROUP}/generation"

MAX_NAME = 63
HASH_LEN = 8

# Step names used in child names and in the `quantbench.dev/step` label.
STEP_SERVER = "server"
STEP_ACCURACY = "accuracy"
STEP_FIDELITY = "fidelity"
STEP_RUN = "run"
STEP_PROBE = "probe"
WORKLOAD_PREFIX = "wl-"

_INVALID = re.compile(r"[^a-z0-9-]+")


def _clean(part: str) -> str:
    return _INVALID.sub("-", part.lower()).strip("-")


def dns1035(*parts: str, max_len: int = MAX_NAME) -> str:
    """Join name parts with '-' into a DNS-1035 label of at most ``max_len`` characters.

    When the joined name is too long it is cut and a stable hash of the full name is appended.
    """
    full = "-".join(p for p in (_clean(x) for x in parts) if p)
    if not full:
        raise ValueError("a name needs at least one non-empty part")
    if not full[0].isalpha():
        full = f"x{full}"
    if len(full) <= max_len:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:HASH_LEN]
    head = full[: max_len - HASH_LEN - 1].rstrip("-")
    return f"{head}-{digest}"


def run_id(started: datetime, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """Run id from its start time (UTC), e.g. ``r20261123-030000``; a suffix keeps it unique among ``taken``."""
    base = f"r{started:%Y%m%d-%H%M%S}"
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def workload_step(workload: str) -> str:
    return f"{WORKLOAD_PREFIX}{workload}"


def child_name(benchmark: str, run: str, variant: str | None = None, step: str | None = None) -> str:
    """Name of a run's child object: ``<benchmark>-<run>[-<variant>][-<step>]``, DNS-1035 safe."""
    return dns1035(benchmark, run, variant or "", step or "")


def server_name(benchmark: str, run: str, variant: str) -> str:
    """The vLLM Deployment and its Service (same name, different kinds)."""
    return child_name(benchmark, run, variant, STEP_SERVER)


def job_name(benchmark: str, run: str, variant: str | None, step: str) -> str:
    """A Job (a variant's benchmark step, or a run-wide one such as a probe); its results ConfigMap has the
    same name."""
    return child_name(benchmark, run, variant, step)


def responses_part_name(benchmark: str, run: str, variant: str, part: int) -> str:
    """A ConfigMap holding one piece of a sequential baseline's responses (gzip-compressed, in order)."""
    return child_name(benchmark, run, variant, f"{STEP_ACCURACY}-responses-{part}")


def probe_step(pool: str | None) -> str:
    """Step name of a node pool's roofline probe: ``probe-<pool>``, or ``probe`` for any GPU node."""
    return f"{STEP_PROBE}-{pool}" if pool else STEP_PROBE


def probe_name(benchmark: str, run: str, pool: str | None) -> str:
    """The roofline probe Job of a node pool; its results ConfigMap has the same name."""
    return job_name(benchmark, run, None, probe_step(pool))


def run_config_name(benchmark: str, run: str) -> str:
    """The ConfigMap holding the run's spec snapshot and plan."""
    return child_name(benchmark, run, None, STEP_RUN)


def label_value(value: str) -> str:
    """A label value (<= 63 characters, alphanumeric at both ends); long values keep a hash suffix."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-._")
    if len(cleaned) <= MAX_NAME:
        return cleaned
    digest = hashlib.sha256(value.encode()).hexdigest()[:HASH_LEN]
    return f"{cleaned[: MAX_NAME - HASH_LEN - 1].rstrip('-._')}-{digest}"


def labels(
    benchmark: str, run: str | None = None, variant: str | None = None, step: str | None = None
) -> dict[str, str]:
    """Labels every child carries: benchmark, run, variant and step where they apply."""
    out = {LABEL_BENCHMARK: label_value(benchmark), LABEL_MANAGED_BY: MANAGED_BY}
    if run is not None:
        out[LABEL_RUN] = label_value(run)
    if variant is not None:
        out[LABEL_VARIANT] = label_value(variant)
    if step is not None:
        out[LABEL_STEP] = label_value(step)
    return out


def selector(labels_: dict[str, str]) -> str:
    """A label selector string matching every given label."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels_.items()))
