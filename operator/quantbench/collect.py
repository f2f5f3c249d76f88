"""A finished run's results, gathered from what its Jobs wrote into their ConfigMaps (a pure function).

The driver lists the run's ConfigMaps and hands them here; the answer is the same `RunResults` the local
executor's results folder reads as, so the summary is computed one way for both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import ValidationError

from quantbench.analysis.run_results import RunInfo, RunResults, ServerInfo, VariantResults
from quantbench.api.v1alpha1 import VariantStatus
from quantbench.manifests.run import RunSnapshot
from quantbench.naming import job_name, probe_name
from quantbench.objects import ConfigMap
from quantbench.plan import StepKind
from quantbench.reconcile import parse_probe_result, result_of
from quantbench_loadgen.accuracy.results import AccuracyResult
from quantbench_loadgen.fidelity import FidelityResult
from quantbench_loadgen.results import LoadgenResult

log = logging.getLogger(__name__)


def run_results(
    benchmark: str,
    snapshot: RunSnapshot,
    variants: Sequence[VariantStatus],
    configmaps: Mapping[str, ConfigMap],
    finished_at: datetime,
) -> RunResults:
    """The run's results: each variant's server as its status ended, and every result a Job published
    (an invalid one is logged and left out: the variant has already failed on it)."""
    gpus = [v.gpu for v in variants if v.gpu]
    info = RunInfo(
        benchmark=benchmark,
        run_id=snapshot.run_id,
        started_at=snapshot.started_at,
        finished_at=finished_at,
        gpu=gpus[0] if gpus else None,
        spec=snapshot.spec,
    )
    by_name = {v.name: v for v in variants}
    out: dict[str, VariantResults] = {}
    for vp in snapshot.plan.variants:
        v = by_name[vp.variant]
        vr = VariantResults(
            name=vp.variant,
            server=ServerInfo(
                phase=v.phase,
                reason=v.reason,
                message=v.message,
                kernel=v.kernel,
                weights_gib=v.weights_gib,
                startup_s=v.startup_seconds,
                gpu=v.gpu,
                node=v.node,
                node_pool=v.node_pool,
            ),
        )
        for step in vp.steps:
            text = result_of(configmaps.get(job_name(benchmark, snapshot.run_id, vp.variant, step.name)))
            if text is None:
                continue
            try:
                if step.kind == StepKind.ACCURACY:
                    vr.accuracy = AccuracyResult.model_validate_json(text)
                elif step.kind == StepKind.FIDELITY:
                    if vp.variant != snapshot.spec.baseline:  # the baseline's is the reference
                        vr.fidelity = FidelityResult.model_validate_json(text)
                elif step.workload is not None:
                    vr.loadgen[step.workload] = LoadgenResult.model_validate_json(text)
            except ValidationError as exc:
                log.warning(
                    "run %s: invalid result of %s/%s: %s", snapshot.run_id, vp.variant, step.name, exc
                )
        out[vp.variant] = vr
    results = RunResults(info=info, variants=out)
    for probe in snapshot.plan.probes:
        text = result_of(configmaps.get(probe_name(benchmark, snapshot.run_id, probe.pool)))
        measured = parse_probe_result(text)[0] if text is not None else None
        if measured is None:
            continue
        if probe.pool is None:
            results.probe = measured
        else:
            results.probes[probe.pool] = measured
    return results
