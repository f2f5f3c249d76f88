from __future__ import annotations

from typing import Any

from quantbench.api.v1alpha1 import VariantPhase
from quantbench.plan import (
    ANY_POOL,
    TERMINAL_PHASES,
    BaselineUse,
    PoolInfo,
    RunPlan,
    StepKind,
    VariantPlan,
    admitted,
    baseline_use,
    fits_at_once,
    kernel_for,
    plan_run,
    pools_for_spec,
    pools_from_nodes,
    waiting_for_probe,
)
from tests.operator.factories import spec

H100 = PoolInfo(
    "h100",
    "quantbench.dev/pool",
    nodes=2,
    gpus_per_node=8,
    gpu_product="NVIDIA-H100-80GB-HBM3",
)
A100 = PoolInfo("a100", "quantbench.dev/pool", nodes=1, gpus_per_node=8, gpu_product="NVIDIA-A100-SXM4-80GB")
L40S = PoolInfo("l40s", "quantbench.dev/pool", nodes=1, gpus_per_node=4, gpu_product="NVIDIA-L40S")
POOLS = {"h100": H100, "a100": A100, "l40s": L40S}


def variant_of(plan: RunPlan, name: str) -> VariantPlan:
    return next(v for v in plan.variants if v.variant == name)


def test_steps_in_order() -> None:
    plan = plan_run(spec(), POOLS)
    steps = variant_of(plan, "bf16").steps
    assert [s.name for s in steps] == ["wl-latency", "wl-throughput", "accuracy"]
    assert [s.kind for s in steps] == [
        StepKind.WORKLOAD,
        StepKind.WORKLOAD,
        StepKind.ACCURACY,
    ]


def test_same_pool_with_room_for_all_runs_in_parallel() -> None:
    plan = plan_run(spec(), POOLS)
    assert plan.lanes == [["bf16"], ["fp8"], ["awq-int4"]]


def test_same_pool_without_room_runs_one_after_another() -> None:
    s = spec(placement={"nodePool": "l40s", "gpus": 2})  # 3 x 2 GPUs on one 4-GPU node
    s = s.model_copy(update={"variants": [v for v in s.variants if v.name != "fp8"] + [s.variants[1]]})
    plan = plan_run(s, POOLS)
    assert plan.lanes == [["bf16", "awq-int4", "fp8"]]


def test_packing_counts_nodes_not_just_gpus() -> None:
    assert fits_at_once([8, 8], H100)
    assert not fits_at_once([5, 5, 5], H100)  # 15 <= 16 GPUs, but only two nodes of 8
    assert not fits_at_once([1], None)


def test_different_pools_run_in_parallel_and_sequential_forces_one_lane() -> None:
    variants: list[dict[str, Any]] = [
        {"name": "bf16", "precision": "bf16"},
        {"name": "bf16-b", "precision": "bf16", "placement": {"nodePool": "a100", "gpus": 8}},
        {"name": "bf16-c", "precision": "bf16", "placement": {"nodePool": "a100", "gpus": 8}},
    ]
    plan = plan_run(spec(variants=variants), POOLS)
    assert plan.lanes == [["bf16"], ["bf16-b", "bf16-c"]]
    seq = plan_run(spec(variants=variants, parallelism="Sequential"), POOLS)
    assert seq.lanes == [["bf16", "bf16-b", "bf16-c"]]


def test_fp8_on_a100_is_unsupported_and_takes_no_lane() -> None:
    plan = plan_run(spec(pool="a100"), POOLS)
    fp8 = variant_of(plan, "fp8")
    assert fp8.unsupported is not None and "8.9" in fp8.unsupported and "8.0" in fp8.unsupported
    assert ["fp8"] not in plan.lanes and all("fp8" not in lane for lane in plan.lanes)
    assert variant_of(plan, "bf16").unsupported is None
    assert variant_of(plan_run(spec(pool="l40s"), POOLS), "fp8").unsupported is None


def test_admitted_is_the_first_unfinished_of_each_lane() -> None:
    s = spec(placement={"nodePool": "l40s", "gpus": 4})
    plan = plan_run(s, POOLS)
    assert plan.lanes == [["bf16", "fp8", "awq-int4"]]
    assert admitted(plan, {}) == ["bf16"]
    assert admitted(plan, {"bf16": VariantPhase.FAILED}) == ["fp8"]
    done = {"bf16": VariantPhase.SUCCEEDED, "fp8": VariantPhase.SUCCEEDED, "awq-int4": VariantPhase.SUCCEEDED}
    assert admitted(plan, done) == []


def test_kernels() -> None:
    s = spec(
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {"name": "awq", "precision": "awq-int4"},
            {"name": "awq-legacy", "precision": "awq-int4", "quantizationKernel": "awq"},
            {"name": "gptq", "precision": "gptq-int4"},
            {"name": "w8a8", "precision": "int8-w8a8"},
        ]
    )
    assert [kernel_for(v) for v in s.variants] == [None, "awq_marlin", "awq", "gptq_marlin", None]
    plan = plan_run(s, POOLS)
    assert variant_of(plan, "w8a8").kernel == "compressed-tensors"
    assert variant_of(plan, "awq-legacy").kernel == "awq"


def node(
    name: str, pool: str | None, gpus: int, product: str | None = None, cordoned: bool = False
) -> dict[str, Any]:
    labels = {"quantbench.dev/pool": pool} if pool else {}
    if product:
        labels["nvidia.com/gpu.product"] = product
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": cordoned},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "8"}},
    }


def test_pools_from_nodes() -> None:
    nodes = [
        node("h100-0", "h100", 8, "NVIDIA-H100-80GB-HBM3"),
        node("h100-1", "h100", 8, "NVIDIA-H100-80GB-HBM3"),
        node("h100-2", "h100", 8, "NVIDIA-H100-80GB-HBM3", cordoned=True),
        node("cpu-0", "cpu", 0),
        node("other", None, 0),
    ]
    pools = pools_from_nodes(nodes, "quantbench.dev/pool", "nvidia.com/gpu", "nvidia.com/gpu.product")
    assert pools["h100"].nodes == 2 and pools["h100"].gpus_per_node == 8
    assert pools["h100"].gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert pools["cpu"].gpus_per_node == 0
    assert pools[ANY_POOL].nodes == 4 and pools[ANY_POOL].gpus_per_node == 8
    assert pools["cpu"].cpu_per_node == 8 and pools["cpu"].memory_per_node is None  # not reported: unknown
    big = node("cpu-1", "cpu", 0)
    big["status"]["allocatable"] |= {"cpu": "31500m", "memory": "128Gi"}
    cpu = pools_from_nodes([node("cpu-0", "cpu", 0), big], "quantbench.dev/pool", "nvidia.com/gpu", "x")[
        "cpu"
    ]
    assert cpu.cpu_per_node == 31.5 and cpu.memory_per_node == 128 * 2**30


def test_a_variant_that_can_never_be_scheduled_gets_its_own_lane() -> None:
    variants: list[dict[str, Any]] = [
        {"name": "bf16", "precision": "bf16"},
        {"name": "huge", "precision": "bf16", "placement": {"gpus": 9}},
        {"name": "nowhere", "precision": "bf16", "placement": {"nodePool": "h300"}},
    ]
    plan = plan_run(spec(variants=variants), POOLS)
    assert plan.lanes == [["bf16"], ["huge"], ["nowhere"]]


def test_probe_plans_one_probe_per_pool_in_use() -> None:
    variants: list[dict[str, Any]] = [
        {"name": "bf16", "precision": "bf16"},
        {"name": "awq", "precision": "awq-int4"},
        {"name": "bf16-a100", "precision": "bf16", "placement": {"nodePool": "a100"}},
        {"name": "fp8-a100", "precision": "fp8", "placement": {"nodePool": "a100"}},  # unsupported there
        {"name": "nowhere", "precision": "bf16", "placement": {"nodePool": "h300"}},
    ]
    plan = plan_run(spec(variants=variants, probe=True), POOLS)
    assert [(p.pool, p.variant, p.skipped) for p in plan.probes] == [
        ("h100", "bf16", None),
        ("a100", "bf16-a100", None),
        ("h300", "nowhere", "no node in node pool h300 has a GPU to probe"),
    ]
    assert plan.probes[1].gpu_product == "NVIDIA-A100-SXM4-80GB"
    assert plan_run(spec(variants=variants), POOLS).probes == []
    sequential = plan_run(spec(variants=variants, probe=True, parallelism="Sequential"), POOLS)
    assert sequential.probes == plan.probes
    # Without a pool: one probe of any GPU node.
    anywhere = spec(variants=[{"name": "bf16", "precision": "bf16"}], probe=True, placement={"gpus": 1})
    assert [(p.pool, p.skipped) for p in plan_run(anywhere, {ANY_POOL: H100}).probes] == [(None, None)]


def test_a_pools_variants_wait_for_its_probe_only() -> None:
    variants: list[dict[str, Any]] = [
        {"name": "bf16", "precision": "bf16"},
        {"name": "bf16-a100", "precision": "bf16", "placement": {"nodePool": "a100"}},
    ]
    plan = plan_run(spec(variants=variants, probe=True), POOLS)
    assert waiting_for_probe(plan, {}) == {"h100", "a100"}
    assert waiting_for_probe(plan, {"h100": "Running", "a100": "Failed"}) == {"h100"}
    assert waiting_for_probe(plan, {"h100": "Succeeded", "a100": "Skipped"}) == set()


CPU = PoolInfo("cpu", "quantbench.dev/pool", nodes=2, gpus_per_node=0, gpu_product=None)


def planned(plan: Any, name: str) -> Any:
    return next(v for v in plan.variants if v.variant == name)


def cpu_spec(**kw: Any) -> Any:
    """bf16 and awq-int4 (legacy kernel) on H100 and on the CPU pool, fp8 and Marlin AWQ on the CPU pool."""
    on_cpu = {"nodePool": "cpu", "gpus": 0, "cpu": "8", "memory": "32Gi"}
    awq = {"precision": "awq-int4", "model": "org/awq"}
    return spec(
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {"name": "bf16-cpu", "precision": "bf16", "placement": on_cpu},
            {"name": "awq-cpu", **awq, "quantizationKernel": "awq", "placement": on_cpu},
            {"name": "marlin-cpu", **awq, "placement": on_cpu},
            {"name": "fp8-cpu", "precision": "fp8", "placement": on_cpu},
        ],
        **kw,
    )


def test_cpu_variants_share_one_lane_of_their_pool_and_take_no_probe() -> None:
    plan = plan_run(cpu_spec(probe=True), {**POOLS, "cpu": CPU})
    assert plan.lanes == [["bf16"], ["bf16-cpu", "awq-cpu"]]
    assert planned(plan, "bf16-cpu").gpus == 0 and planned(plan, "bf16-cpu").gpu_product is None
    assert [p.pool for p in plan.probes] == ["h100"]


def test_fp8_and_marlin_on_cpus_are_unsupported_with_the_local_executors_message() -> None:
    from quantbench.local.executor import Device, unsupported_here

    s = cpu_spec()
    plan = plan_run(s, {**POOLS, "cpu": CPU})
    for name, needle in (("fp8-cpu", "no FP8 kernels"), ("marlin-cpu", "quantizationKernel: awq")):
        why = planned(plan, name).unsupported
        assert why is not None and needle in why, why
        assert why == unsupported_here(s.variant(name), Device(gpu=None))  # quantbench run says the same
    assert planned(plan, "bf16-cpu").unsupported is None and planned(plan, "awq-cpu").unsupported is None


def test_a_cpu_variant_on_a_pool_that_does_not_exist_fails_fast_in_its_own_lane() -> None:
    plan = plan_run(cpu_spec(), POOLS)
    assert ["bf16-cpu"] in plan.lanes and ["awq-cpu"] in plan.lanes


def test_a_variants_pool_label_and_gpu_resource_overrides_are_honoured() -> None:
    mig = {
        "metadata": {
            "name": "mig-0",
            "labels": {"karpenter.sh/nodepool": "mig", "nvidia.com/gpu.product": "A100"},
        },
        "spec": {},
        "status": {"allocatable": {"nvidia.com/mig-3g.40gb": "2"}},
    }
    nodes = [node("h100-0", "h100", 8, "NVIDIA-H100-80GB-HBM3"), node("x-0", "gone", 8), mig]
    bench = spec(
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {
                "name": "mig",
                "precision": "bf16",
                "placement": {
                    "nodePool": "mig",
                    "nodePoolLabel": "karpenter.sh/nodepool",
                    "gpuResource": "nvidia.com/mig-3g.40gb",
                    "gpus": 2,
                },
            },
            # under its own label, pool "gone" has no node (a default-label node says gone: not that one)
            {
                "name": "ghost",
                "precision": "bf16",
                "placement": {"nodePool": "gone", "nodePoolLabel": "other/pool"},
            },
        ]
    )
    pools = pools_for_spec(nodes, bench, "nvidia.com/gpu.product")
    assert pools["mig"].gpus_per_node == 2 and pools["mig"].label == "karpenter.sh/nodepool"
    plan = plan_run(bench, pools)
    assert next(v for v in plan.variants if v.variant == "mig").gpu_product == "A100"
    assert ["mig"] in plan.lanes  # before: the pool was counted with nvidia.com/gpu and had no GPU
    assert "gone" not in pools and pools["h100"].nodes == 1


SEQUENTIAL = {"limit": 100, "sequential": {"looks": 5, "discordance": 0.05}}


def test_with_sequential_accuracy_the_baseline_comes_first_in_its_lane() -> None:
    listed = [{"name": n, "precision": p} for n, p in (("fp8", "fp8"), ("awq", "awq-int4"), ("bf16", "bf16"))]
    one_lane = spec(variants=listed, placement={"nodePool": "h100", "gpus": 8}, parallelism="Sequential")
    assert plan_run(one_lane, POOLS).lanes == [["fp8", "awq", "bf16"]]  # spec order without it
    paired = spec(
        variants=listed,
        placement={"nodePool": "h100", "gpus": 8},
        parallelism="Sequential",
        accuracy=SEQUENTIAL,
    )
    assert plan_run(paired, POOLS).lanes == [["bf16", "fp8", "awq"]]
    # A pool too small for all at once: one lane, the baseline first; the plan's variants keep spec order.
    small = spec(variants=listed, placement={"nodePool": "l40s", "gpus": 2}, accuracy=SEQUENTIAL)
    plan = plan_run(small, POOLS)
    assert plan.lanes == [["bf16", "fp8", "awq"]] and [v.variant for v in plan.variants] == [
        "fp8",
        "awq",
        "bf16",
    ]


def test_only_a_non_baseline_accuracy_step_waits_and_only_while_the_baseline_can_still_deliver() -> None:
    paired, plain = spec(accuracy=SEQUENTIAL), spec()
    running = VariantPhase.EVALUATING
    acc = StepKind.ACCURACY
    assert baseline_use(plain, "fp8", acc, running, False) == BaselineUse.NOT_NEEDED
    assert baseline_use(paired, "bf16", acc, running, False) == BaselineUse.NOT_NEEDED
    assert baseline_use(paired, "fp8", acc, running, False) == BaselineUse.WAIT
    assert baseline_use(paired, "fp8", acc, VariantPhase.PENDING, False) == BaselineUse.WAIT
    assert baseline_use(paired, "fp8", acc, running, True) == BaselineUse.USE
    assert baseline_use(paired, "fp8", acc, VariantPhase.FAILED, True) == BaselineUse.USE
    for ended in TERMINAL_PHASES:
        assert baseline_use(paired, "fp8", acc, ended, False) == BaselineUse.MISSING
    # Workload steps never wait; without accuracy.fidelity there is no fidelity step to wait.
    assert baseline_use(paired, "fp8", StepKind.WORKLOAD, running, False) == BaselineUse.NOT_NEEDED


FIDELITY = {"limit": 100, "fidelity": {"prompts": 8, "maxTokens": 16, "topK": 5}}


def test_with_fidelity_a_fidelity_step_comes_before_accuracy() -> None:
    steps = variant_of(plan_run(spec(accuracy=FIDELITY), POOLS), "fp8").steps
    assert [(s.name, s.kind) for s in steps] == [
        ("wl-latency", StepKind.WORKLOAD),
        ("wl-throughput", StepKind.WORKLOAD),
        ("fidelity", StepKind.FIDELITY),
        ("accuracy", StepKind.ACCURACY),
    ]
    assert "fidelity" not in [s.name for s in variant_of(plan_run(spec(), POOLS), "fp8").steps]


def test_with_fidelity_the_baseline_comes_first_in_its_lane() -> None:
    listed = [{"name": n, "precision": p} for n, p in (("fp8", "fp8"), ("awq", "awq-int4"), ("bf16", "bf16"))]
    bench = spec(
        variants=listed,
        placement={"nodePool": "h100", "gpus": 8},
        parallelism="Sequential",
        accuracy=FIDELITY,
    )
    assert plan_run(bench, POOLS).lanes == [["bf16", "fp8", "awq"]]


def test_a_variants_fidelity_step_waits_for_the_baselines_reference_and_is_released_when_it_cannot_come() -> (
    None
):
    fid, both = spec(accuracy=FIDELITY), spec(accuracy={**FIDELITY, **SEQUENTIAL})
    running, step = VariantPhase.BENCHMARKING, StepKind.FIDELITY
    assert (
        baseline_use(fid, "bf16", step, running, False) == BaselineUse.NOT_NEEDED
    )  # it writes the reference
    assert baseline_use(fid, "fp8", step, running, False) == BaselineUse.WAIT
    assert baseline_use(fid, "fp8", step, VariantPhase.PENDING, False) == BaselineUse.WAIT
    assert baseline_use(fid, "fp8", step, running, True) == BaselineUse.USE
    assert baseline_use(fid, "fp8", step, VariantPhase.FAILED, True) == BaselineUse.USE
    for ended in TERMINAL_PHASES:
        assert baseline_use(fid, "fp8", step, ended, False) == BaselineUse.MISSING
    # Fidelity alone does not make the accuracy step wait; with accuracy.sequential too, both wait.
    assert baseline_use(fid, "fp8", StepKind.ACCURACY, running, False) == BaselineUse.NOT_NEEDED
    assert baseline_use(both, "fp8", StepKind.ACCURACY, running, False) == BaselineUse.WAIT
    assert baseline_use(both, "fp8", step, running, False) == BaselineUse.WAIT
