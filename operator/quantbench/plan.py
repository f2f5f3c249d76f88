"""Spec -> run plan, a pure function.

For each variant the plan lists its Jobs in order (each workload, then fidelity to the baseline when
accuracy.fidelity asks for it, then the accuracy task); they run against
the variant's server, which is started before them and deleted after them. Variants are arranged in *lanes*: lanes run in parallel, the
variants of one lane one after another. Variants on different node pools get different lanes; variants on
the same pool share a lane unless the pool has GPUs for all of them at once (checked by packing their
servers onto the pool's nodes). `spec.parallelism: Sequential` puts every variant in one lane.

A variant placed with ``gpus: 0`` is served on CPUs (vLLM's CPU backend); the CPU variants of one pool share
one lane (they would compete for the same cores and memory bandwidth), and they take no roofline probe.

A variant whose precision the pool cannot run (FP8 needs compute capability >= 8.9; CPUs have no FP8 or
Marlin kernels) is marked unsupported in the plan and takes no lane: it ends at once, the others go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from quantbench.api.v1alpha1 import (
    Parallelism,
    Placement,
    Precision,
    ProbePhase,
    QuantBenchmarkSpec,
    Variant,
    VariantPhase,
    quantity,
)
from quantbench.gpus import unsupported_precision
from quantbench.naming import STEP_ACCURACY, STEP_FIDELITY, workload_step
from quantbench.objects import Node, NodeSpec, NodeStatus, labels_of
from quantbench_loadgen.schema import ApiModel

ANY_POOL = ""  # key of the group of variants with no node pool (any node with the GPU resource)

TERMINAL_PHASES: frozenset[str] = frozenset(
    {VariantPhase.SUCCEEDED, VariantPhase.FAILED, VariantPhase.UNSUPPORTED}
)

OPEN_PROBE_PHASES: frozenset[str] = frozenset({ProbePhase.PENDING, ProbePhase.RUNNING})

DEFAULT_KERNEL: dict[str, str | None] = {
    Precision.BF16: None,
    Precision.FP16: None,
    Precision.FP8: "fp8",
    Precision.AWQ_INT4: "awq_marlin",
    Precision.GPTQ_INT4: "gptq_marlin",
    Precision.INT8_W8A8: None,  # vLLM reads compressed-tensors from the checkpoint's own config
}


@dataclass(frozen=True)
class PoolInfo:
    """What the nodes of one pool offer (read from Node objects)."""

    name: str
    label: str
    nodes: int
    gpus_per_node: int
    gpu_product: str | None = None
    cpu_per_node: float | None = None  # largest allocatable CPU count of a node (None: unknown)
    memory_per_node: float | None = None  # largest allocatable memory of a node, bytes (None: unknown)


def kernel_for(variant: Variant) -> str | None:
    """The vLLM --quantization value the variant's server runs with (None: none passed)."""
    if variant.quantization_kernel is not None:
        return str(variant.quantization_kernel)
    return DEFAULT_KERNEL[variant.precision]


def kernel_label(variant: Variant) -> str | None:
    """The kernel as reported in status: the --quantization value, or what vLLM picks from the checkpoint."""
    kernel = kernel_for(variant)
    if kernel is None and variant.precision == Precision.INT8_W8A8:
        return "compressed-tensors"
    return kernel


class StepKind(StrEnum):
    WORKLOAD = "workload"
    FIDELITY = "fidelity"
    ACCURACY = "accuracy"


_OLD_STEP_KINDS = ("server", "collect", "teardown")


class Step(ApiModel):
    kind: StepKind = Field(description="What the step does.")
    name: str = Field(description="Step name used in child names and labels, e.g. server or wl-latency.")
    workload: str | None = Field(default=None, description="Workload name, for workload steps.")


class VariantPlan(ApiModel):
    variant: str
    precision: str
    pool: str | None = Field(default=None, description="Node pool, or None for any GPU node.")
    gpus: int = Field(description="GPUs of the server; 0: it runs on CPUs.")
    gpu_product: str | None = None
    kernel: str | None = None
    steps: list[Step] = Field(description="The Jobs run against the variant's server, in order.")
    unsupported: str | None = Field(default=None, description="Why the pool's GPU cannot run the variant.")
    unavailable: str | None = Field(
        default=None, description="Why the variant's datasets or model cannot be had (quantbench.sources)."
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _jobs_only(cls, steps: Any) -> Any:
        """Run ConfigMaps written before plans listed only Jobs also hold server/collect/teardown steps:
        a run in progress across an operator upgrade reads on without them."""
        if isinstance(steps, list):
            return [s for s in steps if not (isinstance(s, dict) and s.get("kind") in _OLD_STEP_KINDS)]
        return steps


class ProbePlan(ApiModel):
    """The roofline probe of one node pool (spec.probe): one GPU, before the pool's servers start."""

    pool: str | None = Field(default=None, description="Node pool, or None for any GPU node.")
    variant: str = Field(description="The first variant on the pool: the probe borrows its placement.")
    gpu_product: str | None = None
    skipped: str | None = Field(default=None, description="Why the probe cannot run on the pool.")


class RunPlan(ApiModel):
    variants: list[VariantPlan]
    lanes: list[list[str]] = Field(description="Variant names; lanes run in parallel, a lane in order.")
    probes: list[ProbePlan] = Field(default_factory=list, description="Roofline probes, one per pool.")


def variant_steps(spec: QuantBenchmarkSpec) -> list[Step]:
    """The Jobs of each variant, in order: one per workload, then fidelity (accuracy.fidelity: the baseline
    writes the reference, the others compare with it), then the accuracy task. Fidelity comes first, as in
    `quantbench run`: a variant's greedy answer disagreement sizes its sequential evaluation's chunks."""
    steps = [
        Step(kind=StepKind.WORKLOAD, name=workload_step(w.name), workload=w.name) for w in spec.workloads
    ]
    if spec.accuracy is not None:
        if spec.accuracy.fidelity is not None:
            steps.append(Step(kind=StepKind.FIDELITY, name=STEP_FIDELITY))
        steps.append(Step(kind=StepKind.ACCURACY, name=STEP_ACCURACY))
    return steps


def fits_at_once(gpus: list[int], pool: PoolInfo | None) -> bool:
    """Whether servers asking for ``gpus`` each can all run on the pool's nodes at once (first-fit decreasing)."""
    if pool is None or pool.nodes == 0:
        return False
    free = [pool.gpus_per_node] * pool.nodes
    for need in sorted(gpus, reverse=True):
        for i, left in enumerate(free):
            if left >= need:
                free[i] -= need
                break
        else:
            return False
    return True


def plan_run(
    spec: QuantBenchmarkSpec, pools: Mapping[str, PoolInfo], unavailable: Mapping[str, str] | None = None
) -> RunPlan:
    """The run plan for ``spec`` given the node pools' capacity (keyed by pool name, ANY_POOL for none) and
    the variants whose sources cannot be had (``unavailable``: name -> why, see quantbench.sources); those,
    like unsupported ones, take no lane and no probe."""
    unavailable = unavailable or {}
    steps = variant_steps(spec)
    plans: list[VariantPlan] = []
    for v in spec.variants:
        placement = spec.placement_for(v)
        pool = pools.get(placement.node_pool or ANY_POOL)
        product = pool.gpu_product if pool else None
        why = unsupported_precision(v.precision, kernel_label(v), product, on_cpu=placement.on_cpu)
        plans.append(
            VariantPlan(
                variant=v.name,
                precision=v.precision,
                pool=placement.node_pool,
                gpus=placement.gpus,
                gpu_product=None if placement.on_cpu else product,
                kernel=kernel_label(v),
                steps=steps,
                unsupported=why,
                unavailable=unavailable.get(v.name),
            )
        )
    runnable = [p for p in plans if p.unsupported is None and p.unavailable is None]
    if pairs_with_baseline(spec):
        # The baseline first in its lane: the others' fidelity or accuracy Jobs wait for its result, so
        # nothing may wait behind them for a GPU it needs (see baseline_use).
        runnable.sort(key=lambda p: p.variant != spec.baseline)
    order = {p.variant: i for i, p in enumerate(plans)}
    probes = plan_probes(runnable, pools) if spec.probe else []
    if spec.parallelism == Parallelism.SEQUENTIAL:
        one_lane = [[p.variant for p in runnable]] if runnable else []
        return RunPlan(variants=plans, lanes=one_lane, probes=probes)
    groups: dict[str, list[VariantPlan]] = {}
    cpu_groups: dict[str, list[str]] = {}
    lanes: list[list[str]] = []
    for p in runnable:
        pool = pools.get(p.pool or ANY_POOL)
        if pool is None or pool.nodes == 0 or p.gpus > pool.gpus_per_node:
            # It can never be scheduled: its own lane, so it fails fast and blocks no one.
            lanes.append([p.variant])
        elif p.gpus == 0:
            cpu_groups.setdefault(p.pool or ANY_POOL, []).append(p.variant)
        else:
            groups.setdefault(p.pool or ANY_POOL, []).append(p)
    lanes += cpu_groups.values()
    for key, members in groups.items():
        if fits_at_once([m.gpus for m in members], pools.get(key)):
            lanes += [[m.variant] for m in members]
        else:
            lanes.append([m.variant for m in members])
    return RunPlan(variants=plans, lanes=sorted(lanes, key=lambda lane: order[lane[0]]), probes=probes)


def pairs_with_baseline(spec: QuantBenchmarkSpec) -> bool:
    """Whether some step of the other variants uses the baseline's result: its per-question outcomes
    (accuracy.sequential) or its fidelity reference (accuracy.fidelity)."""
    return spec.accuracy is not None and (
        spec.accuracy.sequential is not None or spec.accuracy.fidelity is not None
    )


def uses_baseline(spec: QuantBenchmarkSpec, variant: str, kind: StepKind) -> bool:
    """Whether this variant's step of this kind reads the baseline's result of the same step: the fidelity
    step of every other variant compares with the baseline's reference; the accuracy step of every other
    variant, with accuracy.sequential, stops early against the baseline's outcomes."""
    if spec.accuracy is None or variant == spec.baseline:
        return False
    if kind == StepKind.FIDELITY:
        return spec.accuracy.fidelity is not None
    if kind == StepKind.ACCURACY:
        return spec.accuracy.sequential is not None
    return False


class BaselineUse(StrEnum):
    """What a variant's step does about the baseline's result of the same step."""

    NOT_NEEDED = "NotNeeded"  # the step does not read it (or this is the baseline): run as planned
    USE = "Use"  # the baseline's result is in: mount it
    WAIT = "Wait"  # the baseline is still running: create the Job once its result is in
    MISSING = "Missing"  # the baseline ended without a usable result: go without it


def baseline_use(
    spec: QuantBenchmarkSpec,
    variant: str,
    kind: StepKind,
    baseline_phase: str | None,
    baseline_result_ok: bool,
) -> BaselineUse:
    """The ordering rule of the steps that read the baseline's result on Kubernetes (pure).

    A non-baseline variant's fidelity step (accuracy.fidelity) and, with accuracy.sequential, its accuracy
    step depend on the baseline: the Job starts once the baseline's result of the same step is in its
    results ConfigMap (USE). Until then the step waits (its server stays up: the workloads have run first,
    so the wait is what is left of the baseline's step). The wait cannot deadlock: the plan puts the
    baseline first in its lane, so a variant it could queue behind for a GPU runs after it. A baseline that
    ended without a valid result (failed, unsupported) releases the others (MISSING): a sequential
    evaluation asks every planned question, a fidelity step is skipped (there is nothing to compare with).
    Workload steps never wait.
    """
    if not uses_baseline(spec, variant, kind):
        return BaselineUse.NOT_NEEDED
    if baseline_result_ok:
        return BaselineUse.USE
    if baseline_phase in TERMINAL_PHASES:
        return BaselineUse.MISSING
    return BaselineUse.WAIT


def plan_probes(runnable: list[VariantPlan], pools: Mapping[str, PoolInfo]) -> list[ProbePlan]:
    """One roofline probe per node pool that runnable variants use, in the order the pools first appear.

    The probe takes one GPU of the pool; a pool with no node that has one gets a skipped probe, with the
    reason (its variants fail on their own as unschedulable). CPU variants (gpus: 0) take no probe.
    """
    out: dict[str | None, ProbePlan] = {}
    for p in runnable:
        if p.pool in out or p.gpus == 0:  # a CPU server: no GPU to measure
            continue
        pool = pools.get(p.pool or ANY_POOL)
        skipped = None
        if pool is None or pool.nodes == 0 or pool.gpus_per_node < 1:
            where = f"node pool {p.pool}" if p.pool else "the cluster"
            skipped = f"no node in {where} has a GPU to probe"
        out[p.pool] = ProbePlan(pool=p.pool, variant=p.variant, gpu_product=p.gpu_product, skipped=skipped)
    return list(out.values())


def waiting_for_probe(plan: RunPlan, probe_phases: Mapping[str | None, str]) -> set[str | None]:
    """Pools whose probe has not ended: their variants may not start their servers yet."""
    return {p.pool for p in plan.probes if probe_phases.get(p.pool, "Pending") in OPEN_PROBE_PHASES}


def admitted(plan: RunPlan, phases: Mapping[str, str]) -> list[str]:
    """Variants that may hold GPUs now: in each lane, the first one that has not ended."""
    out: list[str] = []
    for lane in plan.lanes:
        for name in lane:
            if phases.get(name, VariantPhase.PENDING) not in TERMINAL_PHASES:
                out.append(name)
                break
    return out


def _amount(value: object) -> float | None:
    try:
        return quantity(str(value)) if value is not None else None
    except ValueError:
        return None


def pools_from_nodes(
    nodes: list[Node], pool_label: str, gpu_resource: str, product_label: str
) -> dict[str, PoolInfo]:
    """Pool capacity from Node objects: per value of ``pool_label``, plus ANY_POOL for all."""
    by_pool: dict[str, list[tuple[int, str | None, float | None, float | None]]] = {}
    for node in nodes:
        if (node.get("spec") or NodeSpec()).get("unschedulable"):
            continue
        node_labels = labels_of(node)
        allocatable = (node.get("status") or NodeStatus()).get("allocatable") or {}
        alloc = str(allocatable.get(gpu_resource, "0"))
        gpus = int(alloc) if alloc.isdigit() else 0
        entry = (
            gpus,
            node_labels.get(product_label),
            _amount(allocatable.get("cpu")),
            _amount(allocatable.get("memory")),
        )
        by_pool.setdefault(node_labels.get(pool_label, ANY_POOL), []).append(entry)
        if pool_label in node_labels:
            by_pool.setdefault(ANY_POOL, []).append(entry)
    out: dict[str, PoolInfo] = {}
    for name, entries in by_pool.items():
        gpu_nodes = [e for e in entries if e[0] > 0] or entries
        products = [e[1] for e in gpu_nodes if e[1]]
        cpus = [e[2] for e in entries if e[2] is not None]
        memories = [e[3] for e in entries if e[3] is not None]
        out[name] = PoolInfo(
            name=name or "(any)",
            label=pool_label,
            nodes=len(entries),
            gpus_per_node=max(e[0] for e in entries),
            gpu_product=products[0] if products else None,
            cpu_per_node=max(cpus) if cpus else None,
            memory_per_node=max(memories) if memories else None,
        )
    return out


def pools_for_spec(nodes: list[Node], spec: QuantBenchmarkSpec, product_label: str) -> dict[str, PoolInfo]:
    """Pool capacity as each variant sees it: a variant whose placement overrides nodePoolLabel or
    gpuResource gets its pool counted with its own label and resource (keyed by pool name, as plan_run and
    the reconcile read it; ANY_POOL for a variant with no pool)."""
    default = spec.placement
    out = pools_from_nodes(nodes, default.node_pool_label, default.gpu_resource, product_label)
    seen: dict[tuple[str, str], dict[str, PoolInfo]] = {}
    placements: list[Placement] = [spec.placement_for(v) for v in spec.variants]
    plain = {
        p.node_pool or ANY_POOL
        for p in placements
        if (p.node_pool_label, p.gpu_resource) == (default.node_pool_label, default.gpu_resource)
    }
    for p in placements:
        if (p.node_pool_label, p.gpu_resource) == (default.node_pool_label, default.gpu_resource):
            continue
        key = (p.node_pool_label, p.gpu_resource)
        if key not in seen:
            seen[key] = pools_from_nodes(nodes, p.node_pool_label, p.gpu_resource, product_label)
        name = p.node_pool or ANY_POOL
        if name in plain:
            continue  # the same pool name under the default label and resource: ambiguous, keep the default
        if name in seen[key]:
            out[name] = seen[key][name]
        else:
            out.pop(name, None)  # no node carries that label value: the pool has no node now
    return out
