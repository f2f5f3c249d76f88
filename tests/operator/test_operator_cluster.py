"""The operator on the real control plane: runs, failures, restarts, deletion, spec changes, RBAC.

kwok plays the nodes (server pods go Running/Ready by themselves); the tests play the Jobs' part
(harness.Bench.play_job). The operator runs as a separate process under the chart's ClusterRole.
"""

from __future__ import annotations

import base64
import json
import random
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from quantbench.analysis.run_results import RunResults
from quantbench.compact import decode_summary
from quantbench.kube import ApiError, Kube
from quantbench.local.server import free_port
from quantbench.naming import job_name, probe_name, responses_part_name, run_config_name, server_name
from quantbench_loadgen.accuracy.cli import build_parser as accuracy_parser
from quantbench_loadgen.accuracy.results import AccuracyResult, SequentialRecord
from quantbench_loadgen.accuracy.runner import unscreened_note
from quantbench_loadgen.accuracy.screening import BaselineResponse, BaselineResponses, read_responses
from quantbench_loadgen.accuracy.sequential import evaluate_sequentially, plan_for
from quantbench_loadgen.fidelity import read_reference
from quantbench_loadgen.publish import PublishError, Target, publish
from quantbench_loadgen.specs import AccuracySpec
from tests.analysis.builders import accuracy_from_outcomes
from tests.cluster.kube import wait_for
from tests.fixtures.prometheus import Prometheus
from tests.operator import factories
from tests.operator.conftest import OperatorFactory, release
from tests.operator.harness import Bench, admission_policy, label_namespace, result_for, steps_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(240)]

SMALL_WORKLOADS = [{"name": "latency", "type": "latency", "inputLen": 512, "outputLen": 128}]


def two_variants(failing: dict[str, Any], pool: str = "h100", **kw: Any) -> dict[str, Any]:
    """bf16 (the baseline, healthy) and one variant expected to fail."""
    return factories.spec_dict(
        variants=[{"name": "bf16", "precision": "bf16"}, failing], pool=pool, workloads=SMALL_WORKLOADS, **kw
    )


def test_three_variants_run_to_succeeded(
    bench: Bench,
    start_operator: OperatorFactory,
    tmp_path: Path,
    prometheus: Callable[[list[str]], Prometheus],
) -> None:
    spec = factories.spec_dict()
    metrics_port = free_port()
    op = start_operator(
        [bench.ns],
        env={
            "QUANTBENCH_RESULTS_DIR": str(tmp_path / "results"),
            "QUANTBENCH_METRICS_PORT": str(metrics_port),
        },
    )
    bench.create(spec)
    run = bench.run_id()
    # Three 1-GPU servers on the 2 x 8-GPU h100 pool: all three start at once.
    wait_for(lambda: len(bench.names("Deployment", run)) == 3, 30, "three servers")
    for v in ("bf16", "fp8", "awq-int4"):
        bench.play_variant(run, v, spec)
    status = bench.wait_phase(("Succeeded",))
    op.assert_alive()
    assert status["observedGeneration"] == 1
    assert status["variantNames"] == "bf16,fp8,awq-int4"
    variants = {v["name"]: v for v in status["variants"]}
    assert {v["phase"] for v in variants.values()} == {"Succeeded"}
    assert variants["awq-int4"]["kernel"] == "awq_marlin" and variants["fp8"]["kernel"] == "fp8"
    for v in variants.values():
        assert v["node"].startswith("h100-") and v["gpu"] == "NVIDIA-H100-80GB-HBM3"
        assert v["startupSeconds"] >= 0
    summary = status["summary"]
    assert [row["variant"] for row in summary["variants"]] == ["bf16", "fp8", "awq-int4"]
    assert summary["variants"][1]["latencyRatioToBaseline"] == pytest.approx(0.62, rel=0.01)
    assert summary["variants"][2]["accuracy"]["questions"] == 20
    entry = status["history"][0]
    assert "summary" not in entry and entry["phase"] == "Succeeded" and entry["best"] == summary["best"]
    assert [d["variant"] for d in entry["variants"]] == ["bf16", "fp8", "awq-int4"]
    assert entry["variants"][1]["latencyRatioToBaseline"] == pytest.approx(0.62, rel=0.01)
    # The full summary is kept, compressed, in the run's summary ConfigMap (the Jobs' Role cannot reach it).
    kept = bench.kube.get("ConfigMap", bench.ns, entry["summaryConfigMap"])
    assert kept is not None and decode_summary(kept["binaryData"]["summary.json.gz"]).best == summary["best"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert status["lastRunTime"] and "best" in status
    # GPUs released, Jobs and RBAC gone, results kept.
    bench.wait_released(("Deployment", "Service", "Job", "Role", "RoleBinding", "ServiceAccount"))
    assert job_name("llama", run, "fp8", "accuracy") in bench.names("ConfigMap", run)
    bench.wait_events(
        {
            "RunStarted",
            "ServerCreated",
            "ServerReady",
            "JobCreated",
            "ResultCollected",
            "VariantSucceeded",
            "RunSucceeded",
        }
    )
    # The collected results, in the results-folder layout the report reads.
    results = RunResults.load(tmp_path / "results" / bench.ns / "llama" / run)
    assert set(results.variants) == {"bf16", "fp8", "awq-int4"}
    assert set(results.variants["fp8"].loadgen) == {"latency", "throughput"}
    assert results.variants["awq-int4"].accuracy is not None and results.info.run_id == run
    # The summary reaches Prometheus: a real server scrapes the operator's /metrics.
    prom = prometheus([f"127.0.0.1:{metrics_port}"])
    fp8 = summary["variants"][1]
    decode = prom.wait_for(f'quantbench_decode_seconds_per_token{{namespace="{bench.ns}",variant="fp8"}}')
    assert float(decode[0]["value"][1]) == pytest.approx(fp8["msPerTokenBs1"] / 1000)
    assert decode[0]["metric"]["benchmark"] == "llama" and decode[0]["metric"]["precision"] == "fp8"
    verdicts = prom.wait_for(f'quantbench_verdict_info{{namespace="{bench.ns}"}}')
    assert {v["metric"]["variant"] for v in verdicts} == {"bf16", "fp8", "awq-int4"}
    # Run state, regression flags and the operator's health are there too.
    ns = f'namespace="{bench.ns}",benchmark="llama"'
    assert prom.wait_for(f'quantbench_run_phase{{{ns},phase="Succeeded"}} == 1')
    assert prom.wait_for(f"quantbench_run_in_progress{{{ns}}} == 0")
    assert prom.wait_for(f"quantbench_run_duration_seconds{{{ns}}} > 0")
    assert prom.wait_for(f'quantbench_variant_progress_ratio{{{ns},variant="fp8"}} == 1')
    assert len(prom.wait_for(f"quantbench_regressions{{{ns}}} == 0")) == 3
    assert prom.wait_for('quantbench_operator_reconciles_total{result="success"} > 0')
    assert prom.wait_for("quantbench_operator_last_successful_run_timestamp_seconds > 0")
    # A deleted benchmark's series disappear.
    bench.kube.delete("QuantBenchmark", bench.ns, "llama")
    wait_for(
        lambda: not prom.query(f"quantbench_run_phase{{{ns}}}"), 30, "the deleted benchmark's series gone"
    )
    assert not prom.query(f"quantbench_verdict_info{{{ns}}}")


# ------------------------------------------------------------------------------------------ failures


def _container_status(pod: dict[str, Any], **fields: Any) -> dict[str, Any]:
    c = pod["spec"]["containers"][0]
    return {
        "name": c["name"],
        "image": c["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        **fields,
    }


def _patch_pod_status(bench: Bench, pod: dict[str, Any], status: dict[str, Any]) -> None:
    """Play the kubelet's part for states kwok does not produce (image pull errors, crash loops)."""
    bench.kube.merge_patch("Pod", bench.ns, pod["metadata"]["name"], {"status": status}, sub="status")


def image_pull(bench: Bench, pod: dict[str, Any]) -> None:
    waiting = {
        "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "vllm/vllm-openai:nope"'}
    }
    _patch_pod_status(bench, pod, {"containerStatuses": [_container_status(pod, state=waiting)]})


def crash_loop(bench: Bench, pod: dict[str, Any]) -> None:
    status = _container_status(
        pod,
        restartCount=4,
        state={
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}
        },
        lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": None, "finishedAt": None}},
    )
    _patch_pod_status(bench, pod, {"containerStatuses": [status]})


def oom_killed(bench: Bench, pod: dict[str, Any]) -> None:
    bench.cluster.fail_pod(bench.ns, pod["metadata"]["name"], exit_code=137, reason="OOMKilled")


FAILURES: dict[str, tuple[dict[str, Any], str, Any, str, str, str]] = {
    # case: (failing variant, pool, what the test does to its server pod, phase, reason, message part)
    "no-node-in-pool": (
        {"name": "bad", "precision": "bf16", "placement": {"nodePool": "h300"}},
        "h100",
        None,
        "Failed",
        "Unschedulable",
        "no node in pool h300",
    ),
    "not-enough-gpus": (
        {"name": "bad", "precision": "bf16", "placement": {"gpus": 9}},
        "h100",
        None,
        "Failed",
        "Unschedulable",
        "not enough GPUs",
    ),
    "image-pull": (
        {"name": "bad", "precision": "bf16"},
        "h100",
        image_pull,
        "Failed",
        "ImagePullBackOff",
        "cannot pull image",
    ),
    "crash-loop": (
        {"name": "bad", "precision": "bf16"},
        "h100",
        crash_loop,
        "Failed",
        "CrashLoopBackOff",
        "keeps exiting",
    ),
    "oom-killed": (
        {"name": "bad", "precision": "bf16"},
        "h100",
        oom_killed,
        "Failed",
        "OOMKilled",
        "OOM-killed",
    ),
    "fp8-on-a100": (
        {"name": "bad", "precision": "fp8"},
        "a100",
        None,
        "Unsupported",
        "UnsupportedPrecision",
        "compute capability >= 8.9",
    ),
    "job-failed": ({"name": "bad", "precision": "bf16"}, "h100", "fail-job", "Failed", "JobFailed", "failed"),
}


SCREENED = {"limit": 100, "margin": 10, "sequential": {"looks": 5, "discordance": 0.05}}


def _start_comparison(
    bench: Bench,
    start_operator: OperatorFactory,
    accuracy: dict[str, Any],
    step: str,
    order: tuple[str, str] = ("fp8", "bf16"),
) -> tuple[dict[str, Any], str, str]:
    """fp8 against the baseline bf16 (variants listed in `order`) with `accuracy`, started and played up to
    the baseline's Job of `step` (accuracy or fidelity): the spec, the run and that Job's name."""
    spec = factories.spec_dict(
        variants=[{"name": v, "precision": v} for v in order],
        workloads=SMALL_WORKLOADS,
        accuracy=accuracy,
    )
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    for v in ("bf16", "fp8"):
        bench.play_job(run, v, "wl-latency", spec)
    return spec, run, bench.wait_job(run, "bf16", step)


def _finish_variant(
    bench: Bench,
    run: str,
    job: str,
    baseline: AccuracyResult,
    screen: Callable[[Sequence[int]], set[int]] | None = None,
    notes: list[str] | None = None,
) -> tuple[SequentialRecord, dict[str, Any]]:
    """Play fp8's accuracy Job as its runner does: the stopping rule against the baseline's outcomes (the
    variant answering alike, `screen` saying which questions the responses settle), its result published
    with `notes`, the Job succeeded; the run's record and the benchmark's final status."""
    by_id = {o.doc_id: o for o in baseline.outcomes}
    plan = plan_for(AccuracySpec.model_validate(SCREENED))
    outcomes, record = evaluate_sequentially(
        plan, baseline.outcomes, lambda ids: [by_id[i] for i in ids], screen=screen
    )
    result = accuracy_from_outcomes(outcomes, dataset_sha="0" * 64, server_url="http://fp8-server:8000")
    result = result.model_copy(update={"sequential": record, "notes": notes or []})
    bench.publish_result(run, "fp8", "accuracy", result.model_dump_json())
    bench.cluster.finish_job(bench.ns, job, "succeeded")
    return record, bench.wait_phase(("Succeeded",))


def test_a_variants_accuracy_job_gets_the_baselines_outcomes_and_stops_early(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    """accuracy.sequential on Kubernetes: the variant's accuracy Job is created only once the baseline's
    result is in, mounts the baseline's results ConfigMap, and the runner's stopping rule applied to what
    that mount holds ends it early; the summary reports where."""
    spec, run, baseline_job = _start_comparison(bench, start_operator, SCREENED, "accuracy")
    # The variant's accuracy waits for the baseline's outcomes: no Job yet, the status says why.
    waiting = wait_for(
        lambda: (m := bench.variant("fp8").get("message")) and "baseline bf16" in m and m, 30, "fp8 waiting"
    )
    assert "accuracy.sequential" in waiting and bench.variant("fp8")["phase"] == "Evaluating"
    fp8_job = job_name("llama", run, "fp8", "accuracy")
    assert bench.kube.get("Job", bench.ns, fp8_job) is None
    bench.play_job(run, "bf16", "accuracy", spec)
    bench.wait_job(run, "fp8", "accuracy")
    pod = bench.kube.get("Job", bench.ns, fp8_job)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "baseline")
    assert volume["configMap"]["name"] == baseline_job
    container = pod["containers"][0]
    assert "--baseline-result /etc/quantbench-baseline/accuracy.json" in container["command"][-1]
    # What the mount holds: the baseline's published result with its per-question outcomes.
    held = bench.kube.get("ConfigMap", bench.ns, volume["configMap"]["name"])
    key = volume["configMap"]["items"][0]["key"]
    baseline = AccuracyResult.model_validate_json(held["data"][key])
    assert len(baseline.outcomes) == 100
    # Play the Job: the runner's stopping rule against those outcomes, the variant answering alike.
    record, status = _finish_variant(bench, run, fp8_job, baseline)
    assert record.stopped_early and record.verdict == "NonInferior" and record.questions < 100
    row = next(r for r in status["summary"]["variants"] if r["variant"] == "fp8")
    assert row["accuracy"]["quality"] == "NonInferior"
    assert row["accuracy"]["sequential"].startswith("stopped early")
    assert f"after {record.questions} questions" in row["accuracy"]["sequential"]
    created = [e["message"] for e in bench.events() if e["reason"] == "JobCreated"]
    assert any(fp8_job in m and "stops early against the baseline's outcomes" in m for m in created)


def _baseline_responses(baseline: AccuracyResult) -> BaselineResponses:
    """Responses as the baseline's runner writes them (8-shot prompts: ~4.7 kB a question on GSM8K)."""
    shots = "".join(f"Question: worked example {i}?\nAnswer: step by step #### {i}\n\n" for i in range(8))
    return BaselineResponses(
        max_gen_tokens=256,
        stop=["Question:"],
        responses=[
            BaselineResponse(
                doc_id=o.doc_id, key=o.key, prompt=f"{shots}Question: {o.key}?\nAnswer:", response=" #### 1"
            )
            for o in baseline.outcomes
        ],
    )


def test_a_variants_accuracy_job_mounts_the_baselines_published_responses_and_screens_with_them(
    bench: Bench, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    """accuracy.sequential's screening on Kubernetes: the baseline's accuracy Job publishes its responses
    gzip-compressed into the ConfigMaps the operator made for them (its own service account may write them);
    the variant's accuracy Job mounts them read-only through one projected volume and passes
    --baseline-responses; the summary's sequential evidence says how many were screened and generated."""
    spec, run, baseline_job = _start_comparison(bench, start_operator, SCREENED, "accuracy")
    part = responses_part_name("llama", run, "bf16", 0)
    assert bench.kube.get("ConfigMap", bench.ns, part) is not None  # made before the Job, empty
    script = bench.kube.get("Job", bench.ns, baseline_job)["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert "--responses-out /results/responses.json" in script[-1] and f"--part {part}" in script[-1]
    baseline = AccuracyResult.model_validate_json(result_for(spec, "bf16", "accuracy"))
    responses = _baseline_responses(baseline)
    published = bench.publish_responses(baseline_job, responses.model_dump_json(by_alias=True).encode())
    assert published.reason is None and len(published.chunks) == 1
    bench.play_job(run, "bf16", "accuracy", spec)
    fp8_job = bench.wait_job(run, "fp8", "accuracy")
    pod = bench.kube.get("Job", bench.ns, fp8_job)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "responses")
    assert [src["configMap"]["name"] for src in volume["projected"]["sources"]] == [part]
    container = pod["containers"][0]
    assert {"name": "responses", "mountPath": "/etc/quantbench-responses", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert "--baseline-responses /etc/quantbench-responses/responses.json.gz.0" in container["command"][-1]
    # What the mount holds, read as the runner reads it: the baseline's responses, whole.
    pieces = []
    for src in volume["projected"]["sources"]:
        (item,) = src["configMap"]["items"]
        held = bench.kube.get("ConfigMap", bench.ns, src["configMap"]["name"])
        pieces.append(tmp_path / item["path"])
        pieces[-1].write_bytes(base64.b64decode(held["binaryData"][item["key"]]))
    assert read_responses(pieces) == responses
    # Play the Job: every other question's greedy answer is the baseline's (screened), the rest generated.
    record, status = _finish_variant(
        bench, run, fp8_job, baseline, screen=lambda ids: {i for i in ids if i % 2}
    )
    assert record.screened > 0 and record.generated
    row = next(r for r in status["summary"]["variants"] if r["variant"] == "fp8")
    assert f"; {record.screened} screened (" in row["accuracy"]["sequential"]
    assert f"{record.generated} generated" in row["accuracy"]["sequential"]
    bench.wait_events({"JobCreated"})
    created = [e["message"] for e in bench.events() if e["reason"] == "JobCreated"]
    assert any(
        fp8_job in m and "screens with the baseline's responses in 1 configmap(s)" in m for m in created
    )
    assert any(baseline_job in m and "publishes its responses" in m for m in created)
    # Labelled with the run like its results ConfigMaps (what history pruning selects) and owned by the
    # benchmark: pruned and deleted with the run.
    assert {part, baseline_job} <= bench.names("ConfigMap", run)
    held = bench.kube.get("ConfigMap", bench.ns, part)
    assert held["metadata"]["ownerReferences"][0]["name"] == "llama"


@pytest.mark.parametrize("published", ["too-large", "missing"])
def test_a_variant_without_the_baselines_responses_generates_every_question_and_says_why(
    bench: Bench, start_operator: OperatorFactory, published: str
) -> None:
    """Responses too large for the ConfigMaps made for them, or never published (a baseline that wrote no
    file): the baseline's Job does not fail for it, the variant's accuracy Job mounts nothing, is told why,
    and the Event and the summary's notes say it once."""
    spec, run, baseline_job = _start_comparison(bench, start_operator, SCREENED, "accuracy")
    # More than one ConfigMap of incompressible bytes for the one made; or no file at all.
    content = random.Random(0).randbytes(1_200_000) if published == "too-large" else None
    recorded = bench.publish_responses(baseline_job, content)
    assert recorded.chunks == [] and recorded.reason is not None
    bench.play_job(run, "bf16", "accuracy", spec)
    fp8_job = bench.wait_job(run, "fp8", "accuracy")
    pod = bench.kube.get("Job", bench.ns, fp8_job)["spec"]["template"]["spec"]
    assert all(v["name"] != "responses" for v in pod["volumes"])
    args = accuracy_parser().parse_args(shlex.split(pod["containers"][0]["command"][-1].split("; ")[1])[3:])
    assert args.baseline_responses is None and args.baseline_result is not None
    why = args.unscreened_reason
    assert why == f"the baseline's responses were not published: {recorded.reason}"
    if published == "too-large":
        assert "need 2 ConfigMaps of 990000 bytes, 1 were planned" in why
    else:
        assert "wrote no responses file" in why
    # Play the Job as the runner does with that reason: every question generated, the note in its result.
    baseline = AccuracyResult.model_validate_json(result_for(spec, "bf16", "accuracy"))
    _, status = _finish_variant(bench, run, fp8_job, baseline, notes=[unscreened_note(why)])
    notes = [n for n in status["summary"]["notes"] if "no question screened" in n]
    assert notes == [f"fp8/accuracy: no question screened ({why}): every question generated"]
    row = next(r for r in status["summary"]["variants"] if r["variant"] == "fp8")
    assert "screened" not in row["accuracy"]["sequential"]
    bench.wait_events({"JobCreated"})
    created = [
        e["message"] for e in bench.events() if e["reason"] == "JobCreated" and fp8_job in e["message"]
    ]
    assert len(created) == 1 and f"no screening: {why}, every question generated" in created[0]


def test_a_variants_fidelity_job_compares_with_the_baselines_reference_and_the_summary_has_it(
    bench: Bench, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    """accuracy.fidelity on Kubernetes: the baseline's fidelity Job publishes the reference gzip-compressed;
    the variant's fidelity Job is created only once it is in, mounts the baseline's results ConfigMap and
    reads the reference from it; the summary has the variant's fidelity figures."""
    accuracy = {"limit": 20, "fidelity": {"prompts": 4, "maxTokens": 8, "topK": 5}}
    spec, run, baseline_job = _start_comparison(bench, start_operator, accuracy, "fidelity")
    # The variant's fidelity waits for the baseline's reference: no Job yet, the status says why.
    waiting = wait_for(
        lambda: (m := bench.variant("fp8").get("message")) and "baseline bf16" in m and m, 30, "fp8 waiting"
    )
    assert "fidelity reference" in waiting and bench.variant("fp8")["phase"] == "Evaluating"
    fp8_job = job_name("llama", run, "fp8", "fidelity")
    assert bench.kube.get("Job", bench.ns, fp8_job) is None
    bench.play_job(run, "bf16", "fidelity", spec)  # publishes the reference gzip-compressed
    bench.wait_job(run, "fp8", "fidelity")
    pod = bench.kube.get("Job", bench.ns, fp8_job)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "baseline")
    assert volume["configMap"]["name"] == baseline_job
    container = pod["containers"][0]
    assert "fidelity compare" in container["command"][-1]
    assert "--reference /etc/quantbench-baseline/fidelity-reference.json.gz" in container["command"][-1]
    # What the mount holds: the reference as the Job's publisher wrote it, read as the compare phase reads it.
    held = bench.kube.get("ConfigMap", bench.ns, baseline_job)
    item = volume["configMap"]["items"][0]
    mounted = tmp_path / item["path"]
    mounted.write_bytes(base64.b64decode(held["binaryData"][item["key"]]))
    assert read_reference(mounted).model_dump_json(by_alias=True) == factories.fidelity_reference()
    bench.play_job(run, "fp8", "fidelity", spec)
    for v in ("bf16", "fp8"):
        bench.play_job(run, v, "accuracy", spec)
    status = bench.wait_phase(("Succeeded",))
    rows = {r["variant"]: r for r in status["summary"]["variants"]}
    fidelity = json.loads(factories.fidelity_result("fp8"))
    assert rows["fp8"]["fidelity"]["meanKl"] == pytest.approx(fidelity["meanKl"])
    assert rows["fp8"]["fidelity"]["greedyAgreement"] == pytest.approx(fidelity["greedyAgreement"])
    assert not rows["bf16"].get("fidelity")
    bench.wait_events({"JobCreated"})
    created = wait_for(
        lambda: [m for e in bench.events() if e["reason"] == "JobCreated" and fp8_job in (m := e["message"])],
        30,
        "fp8's fidelity JobCreated",
    )
    assert "compares with the baseline's reference" in created[0]


def test_a_baseline_without_a_reference_skips_the_others_fidelity_and_a_reference_too_large_is_refused(
    bench: Bench, start_operator: OperatorFactory, kube_admin: Kube, ca_file: Path
) -> None:
    """The baseline's fidelity Job fails: the variant's fidelity step is skipped (its ConfigMap says why, an
    Event says so), its accuracy runs, the summary has no fidelity for it. A spec whose reference cannot fit
    a ConfigMap is refused before anything runs, with the limit and the figures."""
    accuracy = {"limit": 20, "fidelity": {"prompts": 4, "maxTokens": 8, "topK": 5}}
    spec, run, _ = _start_comparison(bench, start_operator, accuracy, "fidelity", order=("bf16", "fp8"))
    bench.play_job(run, "bf16", "fidelity", spec, outcome="failed")
    bench.wait_variant("bf16", ("Failed",))
    skipped = bench.wait_event("StepSkipped")
    assert "fp8: fidelity skipped: the baseline bf16 ended without a fidelity reference" in skipped["message"]
    held = bench.kube.get("ConfigMap", bench.ns, job_name("llama", run, "fp8", "fidelity"))
    assert "ended without a fidelity reference" in held["data"]["skipped"]
    assert bench.kube.get("Job", bench.ns, job_name("llama", run, "fp8", "fidelity")) is None
    bench.play_job(run, "fp8", "accuracy", spec)
    status = bench.wait_phase(("PartiallySucceeded",))
    rows = {r["variant"]: r for r in status["summary"]["variants"]}
    assert rows["fp8"]["phase"] == "Succeeded" and not rows["fp8"].get("fidelity")

    large = factories.spec_dict(accuracy={"limit": 20, "fidelity": {"prompts": 1000, "maxTokens": 1024}})
    big = Bench(bench.cluster, kube_admin, bench.ns, "big", ca_file).create(large)
    status = wait_for(lambda: big.status() if big.status().get("phase") == "Failed" else None, 30, "Failed")
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["reason"] == "InvalidSpec", degraded
    for words in (
        "spec.accuracy.fidelity",
        "1000 prompts x 1024 maxTokens",
        "1 MiB",
        "at most 5 prompts fit",
    ):
        assert words in degraded["message"], degraded["message"]
    assert big.names("Deployment") == set()


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failure_ends_only_its_variant(bench: Bench, start_operator: OperatorFactory, case: str) -> None:
    failing, pool, action, phase, reason, text = FAILURES[case]
    # A pool with no node may scale up: it is waited for up to server.startupTimeout (kept short here).
    extra = {"server": {"startupTimeout": "10s"}} if case == "no-node-in-pool" else {}
    spec = two_variants(failing, pool=pool, **extra)
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    if action == "fail-job":
        bench.play_job(run, "bad", "wl-latency", spec, outcome="failed")
    elif action is not None:
        pod = bench.wait_server_pod(run, "bad")
        wait_for(
            lambda: bench.variant("bad").get("phase") in ("Starting", "Benchmarking"), 30, "server started"
        )
        action(bench, bench.server_pods(run, "bad")[0] if bench.server_pods(run, "bad") else pod)
    bad = bench.wait_variant("bad", (phase,))
    assert bad["reason"] == reason and text in bad["message"], bad
    bench.wait_event(reason)
    # The failed variant's GPUs are released at once; the healthy one goes on.
    wait_for(
        lambda: server_name("llama", run, "bad") not in bench.names("Deployment", run),
        30,
        "bad server deleted",
    )
    assert not [
        j
        for j in bench.children("Job", run)
        if j["metadata"]["labels"]["quantbench.dev/variant"] == "bad"
        and not j.get("status", {}).get("conditions")
    ]
    bench.play_variant(run, "bf16", spec)
    status = bench.wait_phase(("PartiallySucceeded",))
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Degraded"]["status"] == "True" and conds["Degraded"]["reason"] == reason
    assert conds["Ready"]["status"] == "True"
    rows = {r["variant"]: r for r in status["summary"]["variants"]}
    assert rows["bf16"]["phase"] == "Succeeded" and rows["bad"]["phase"] == phase
    bench.wait_released()


def test_startup_timeout_fails_the_run(bench: Bench, start_operator: OperatorFactory) -> None:
    spec = two_variants({"name": "bad", "precision": "bf16"}, server={"startupTimeout": "4s"})
    # Every server pod runs but never becomes Ready (kwok honours this annotation).
    start_operator(
        [bench.ns],
        env={"QUANTBENCH_SERVER_POD_ANNOTATIONS": json.dumps({"kwok.quantbench.dev/ready": "false"})},
    )
    bench.create(spec)
    status = bench.wait_phase(("Failed",), timeout=60)
    for v in status["variants"]:
        assert (
            v["phase"] == "Failed"
            and v["reason"] == "StartupTimeout"
            and "startupTimeout (4 s)" in v["message"]
        )
    bench.wait_event("StartupTimeout")
    bench.wait_released()
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


# ------------------------------------------------------------------------------------ kill and restart

KILL_POINTS = [
    "servers-created",
    "job-running",
    "result-written-while-down",
    "variant-done",
    "run-finishing",
    # every result of bf16 exists, the status write that records it is refused (an admission policy):
    # nothing may be torn down before it is recorded
    "results-in-status-not-yet",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_and_restart_resumes_without_duplicates(
    bench: Bench, start_operator: OperatorFactory, point: str
) -> None:
    spec = factories.spec_dict(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
        workloads=SMALL_WORKLOADS,
    )
    op = start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    wait_for(lambda: len(bench.names("Deployment", run)) == 2, 30, "two servers")
    if point == "job-running" or point == "result-written-while-down":
        bench.wait_job(run, "bf16", "wl-latency")
    elif point == "variant-done":
        bench.play_variant(run, "bf16", spec)
        bench.wait_variant("bf16", ("Succeeded",))
    elif point == "run-finishing":
        bench.play_variant(run, "bf16", spec)
        for step in steps_of(spec)[:-1]:
            bench.play_job(run, "fp8", step, spec)
        bench.wait_job(run, "fp8", "accuracy")
    before = bench.uids(run)
    if point == "results-in-status-not-yet":
        with status_writes_refused(bench, "bf16"):
            bench.play_variant(run, "bf16", spec)
            bench.wait_event("ReconcileError")  # the write that records bf16 was refused
            assert bench.variant("bf16")["phase"] != "Succeeded"
            before = bench.uids(run)
            assert f"Deployment/{server_name('llama', run, 'bf16')}" in before
            bench.wait_announced(run)
            op.kill()
    bench.wait_announced(run)
    op.kill()
    if point == "result-written-while-down":
        bench.play_job(run, "bf16", "wl-latency", spec)
    if point == "run-finishing":
        bench.play_job(run, "fp8", "accuracy", spec)  # the last result lands while the operator is down
    op2 = start_operator([bench.ns])
    for v in ("bf16", "fp8"):
        bench.play_variant(run, v, spec)
    status = bench.wait_phase(("Succeeded",))
    op2.assert_alive()
    assert [h["id"] for h in status["history"]] == [run], (
        "the restarted operator must resume the run, not start one"
    )
    bench.wait_released(("Deployment", "Service", "Job", "ServiceAccount", "Role", "RoleBinding"))
    after = bench.uids(run)
    for key, uid in before.items():
        if key in after:
            assert after[key] == uid, f"{key} was recreated"
    for key in after:
        assert key.startswith("ConfigMap/"), f"{key} should be gone after the run"
    rows = {r["variant"]: r for r in status["summary"]["variants"]}
    for v in ("bf16", "fp8"):
        assert rows[v]["msPerTokenBs1"] is not None and rows[v]["accuracy"]["questions"] == 20, rows[v]
    jobs_created = [e for e in bench.events() if e["reason"] == "JobCreated"]
    assert len({e["message"] for e in jobs_created}) == 4  # 2 variants x (1 workload + accuracy)
    assert len([e for e in bench.events() if e["reason"] == "ServerCreated"]) == 2


@contextmanager
def status_writes_refused(bench: Bench, variant: str) -> Iterator[None]:
    """Status writes that record ``variant`` Succeeded are refused by a ValidatingAdmissionPolicy."""
    expression = (
        "!has(object.status) || !has(object.status.variants) || "
        f"!object.status.variants.exists(v, v.name == '{variant}' && v.phase == 'Succeeded')"
    )
    with admission_policy(
        bench.kube, "quantbench.dev", "quantbenchmarks/status", expression, "paused"
    ) as name:
        label_namespace(bench.kube, bench.ns, {"quantbench.dev/test-policy": name})

        def enforced() -> bool:
            """The apiserver's admission cache lags a new policy: a dry-run write it refuses shows it acts."""
            body = bench.get() or {}
            variants = [
                {**v, "phase": "Succeeded"} if v.get("name") == variant else v
                for v in (body.get("status") or {}).get("variants") or []
            ]
            try:
                bench.kube.request(
                    "PATCH",
                    bench.kube.path("QuantBenchmark", bench.ns, bench.name, "status"),
                    body={"status": {"variants": variants}},
                    query={"dryRun": "All"},
                    content_type="application/merge-patch+json",
                )
            except ApiError as exc:
                return exc.status in (403, 422)
            return False

        wait_for(enforced, 30, "the status policy enforced")
        yield


# ------------------------------------------------------------------------------------------ lifecycle


def test_deletion_mid_run_cleans_up_everything(bench: Bench, start_operator: OperatorFactory) -> None:
    spec = factories.spec_dict(workloads=SMALL_WORKLOADS)
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    bench.wait_job(run, "bf16", "wl-latency")
    assert not (bench.get() or {})["metadata"].get("finalizers")  # nothing an absent operator must release
    bench.kube.delete("QuantBenchmark", bench.ns, "llama")
    wait_for(lambda: bench.get() is None, 30, "QuantBenchmark deleted")
    # The garbage collector deletes what the benchmark owns.
    for kind in ("Deployment", "Service", "Job", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"):
        wait_for(lambda kind=kind: bench.names(kind) == set(), 30, f"{kind}s deleted")  # type: ignore[misc]
    wait_for(lambda: not bench.server_pods(run, "bf16"), 30, "server pods gone")


def test_spec_change_during_a_run_finishes_it_then_runs_the_new_generation(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = factories.spec_dict(
        variants=[{"name": "bf16", "precision": "bf16"}], workloads=SMALL_WORKLOADS, accuracy=False
    )
    start_operator([bench.ns])
    bench.create(spec)
    run1 = bench.run_id()
    bench.wait_job(run1, "bf16", "wl-latency")
    new_workloads = [*SMALL_WORKLOADS, {"name": "tput", "type": "throughput", "batchSizes": [1, 8]}]
    bench.kube.merge_patch("QuantBenchmark", bench.ns, "llama", {"spec": {"workloads": new_workloads}})
    bench.wait_event("SpecChanged")
    assert bench.status()["currentRun"]["generation"] == 1
    bench.play_variant(run1, "bf16", spec)  # the run in progress keeps generation 1's steps
    new_spec = {**spec, "workloads": new_workloads}
    run2 = wait_for(
        lambda: (r := bench.status().get("currentRun")) and r["generation"] == 2 and r["id"],
        30,
        "run of generation 2",
    )
    assert run2 != run1
    first = bench.status()["history"][0]
    assert first["id"] == run1 and first["generation"] == 1 and first["phase"] == "Succeeded"
    bench.play_variant(run2, "bf16", new_spec)
    status = bench.wait_phase(("Succeeded",))
    assert [(h["id"], h["generation"]) for h in status["history"]] == [(run2, 2), (run1, 1)]
    assert status["observedGeneration"] == 2
    assert job_name("llama", run2, "bf16", "wl-tput") in bench.names("ConfigMap", run2)
    assert job_name("llama", run1, "bf16", "wl-tput") not in bench.names("ConfigMap", run1)


def test_a_job_may_only_update_its_own_result_configmap(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = factories.spec_dict(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
        workloads=SMALL_WORKLOADS,
    )
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    mine = bench.wait_job(run, "bf16", "wl-latency")
    other_variant = bench.wait_job(run, "fp8", "wl-latency")
    token = bench.cluster.service_account_token(bench.ns, mine, create=False)
    target = Target(server=bench.cluster.server, namespace=bench.ns, token=token, ca_file=str(bench.ca_file))
    publish(target, mine, "result.json", "{}")  # its own: allowed
    for other in (other_variant, job_name("llama", run, "bf16", "accuracy"), run_config_name("llama", run)):
        with pytest.raises(PublishError, match="HTTP 403"):
            publish(target, other, "result.json", "{}")
    with pytest.raises(PublishError, match="HTTP 403"):
        publish(target, "kube-root-ca.crt", "result.json", "{}")
    from kubernetes import client as k8s

    with bench.cluster.service_account_client(bench.ns, mine, create=False) as api:
        with pytest.raises(k8s.ApiException) as exc:
            k8s.CoreV1Api(api).list_namespaced_secret(bench.ns)
        assert exc.value.status == 403


def test_one_operator_serves_several_namespaces(
    bench: Bench, start_operator: OperatorFactory, kube_admin: Any, ca_file: Any
) -> None:
    other_ns = bench.cluster.create_namespace(f"{bench.ns[:50]}-b")
    unwatched_ns = bench.cluster.create_namespace(f"{bench.ns[:50]}-c")
    try:
        spec = factories.spec_dict(
            variants=[{"name": "bf16", "precision": "bf16"}], workloads=SMALL_WORKLOADS, accuracy=False
        )
        start_operator([bench.ns, other_ns])
        benches = [bench, Bench(bench.cluster, kube_admin, other_ns, "llama", ca_file)]
        unwatched = Bench(bench.cluster, kube_admin, unwatched_ns, "llama", ca_file)
        for b in [*benches, unwatched]:
            b.create(spec)
        for b in benches:
            run = b.run_id()
            b.play_variant(run, "bf16", spec)
            b.wait_phase(("Succeeded",))
        assert not unwatched.status() and unwatched.names("Deployment") == set()
    finally:
        for ns in (other_ns, unwatched_ns):
            release(kube_admin, ns)
        bench.cluster.delete_namespace(other_ns)
        bench.cluster.delete_namespace(unwatched_ns)


def test_schedule_starts_recurring_runs_and_suspend_stops_them(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = factories.spec_dict(
        variants=[{"name": "bf16", "precision": "bf16"}],
        workloads=SMALL_WORKLOADS,
        accuracy=False,
        schedule="* * * * *",
    )
    start_operator([bench.ns])
    bench.create(spec)
    run1 = bench.run_id()  # a new generation runs at once
    bench.play_variant(run1, "bf16", spec)
    status = bench.wait_phase(("Succeeded",))
    assert status["nextRunTime"] > status["history"][0]["startedAt"]
    run2 = wait_for(
        lambda: (r := bench.status().get("currentRun")) and r["id"] != run1 and r["id"],
        75,
        "the scheduled run",
    )
    assert bench.status()["currentRun"]["generation"] == 1
    bench.play_variant(run2, "bf16", spec)
    status = bench.wait_phase(("Succeeded",))
    assert [h["id"] for h in status["history"]] == [run2, run1]
    bench.kube.merge_patch("QuantBenchmark", bench.ns, "llama", {"spec": {"suspend": True}})
    status = wait_for(
        lambda: bench.status() if bench.status().get("phase") == "Suspended" else None, 30, "Suspended"
    )
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Progressing"] == "Suspended"
    assert "nextRunTime" not in status and not status.get("currentRun")


# ------------------------------------------------------------------------------------------ probes


def test_each_pool_is_probed_before_its_servers_and_a_failed_probe_fails_nothing(
    bench: Bench, start_operator: OperatorFactory, tmp_path: Path
) -> None:
    spec = factories.spec_dict(
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {"name": "awq-int4", "precision": "awq-int4"},
            {"name": "bf16-a100", "precision": "bf16", "placement": {"nodePool": "a100"}},
        ],
        accuracy=False,
        probe=True,
    )
    start_operator([bench.ns], env={"QUANTBENCH_RESULTS_DIR": str(tmp_path / "results")})
    bench.create(spec)
    run = bench.run_id()
    h100, a100 = (probe_name("llama", run, pool) for pool in ("h100", "a100"))
    wait_for(lambda: {h100, a100} <= bench.names("Job", run), 30, "a probe Job per pool")
    assert bench.names("Deployment", run) == set()  # no server before its pool's probe
    # The status is written after the pass that created the Jobs: wait for it.
    wait_for(lambda: bench.variant("bf16").get("step") == "probe", 30, "bf16 waiting for its pool's probe")
    # The scheduler puts each probe on one GPU of its own pool.
    bench.cluster.finish_job(bench.ns, a100, "failed", exit_code=1, reason="Error")
    pods = bench.kube.list("Pod", bench.ns, f"batch.kubernetes.io/job-name={a100}")
    assert pods[0]["spec"]["nodeName"].startswith("a100-")
    assert pods[0]["spec"]["containers"][0]["resources"]["requests"] == {"nvidia.com/gpu": "1"}
    failed = bench.wait_event("ProbeFailed")
    assert "pool a100" in failed["message"] and "the variants go on without it" in failed["message"]
    # The a100 pool's server starts; the h100 pool's still wait for their probe.
    wait_for(
        lambda: server_name("llama", run, "bf16-a100") in bench.names("Deployment", run), 30, "a100 server"
    )
    assert bench.names("Deployment", run) == {server_name("llama", run, "bf16-a100")}
    # The h100 probe publishes its result as the run's Job service account (the Role allows its ConfigMap).
    bench.publish_result(run, None, "probe-h100", factories.probe_result())
    probe_pods = bench.cluster.finish_job(bench.ns, h100, "succeeded")
    bench.wait_event("ProbeSucceeded")
    wait_for(lambda: len(bench.names("Deployment", run)) == 3, 30, "every server")
    for v in ("bf16", "awq-int4", "bf16-a100"):
        bench.play_variant(run, v, spec)
    status = bench.wait_phase(("Succeeded",))
    probes = {p["nodePool"]: p for p in status["probes"]}
    assert probes["h100"]["phase"] == "Succeeded" and probes["h100"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert probes["h100"]["memoryBandwidthBytesPerS"] == pytest.approx(3.187e12, rel=0.01)
    assert probes["h100"]["node"].startswith("h100-") and probe_pods
    assert probes["a100"]["phase"] == "Failed" and probes["a100"]["reason"] == "JobFailed"
    summary = status["summary"]
    assert summary["bandwidthSource"].startswith("probe: ")
    assert summary["memoryBandwidthBytesPerS"] == pytest.approx(3.187e12, rel=0.01)
    bench.wait_released(("Job",))
    results = RunResults.load(tmp_path / "results" / bench.ns / "llama" / run)
    assert set(results.probes) == {"h100"} and results.probe is None
    assert results.probe_for("awq-int4") is not None and results.probe_for("bf16-a100") is None
    assert results.variants["bf16-a100"].server is not None
    assert results.variants["bf16-a100"].server.node_pool == "a100"
