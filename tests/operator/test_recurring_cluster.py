"""Recurring runs on the real control plane, with time controlled by the test.

The driver runs in this process under the operator's service account (the chart's ClusterRole) with an
injected clock: a test moves the clock to a schedule time and reconciles, so no test waits for wall-clock
time. kwok plays the nodes; the tests play the Jobs' part (harness.Bench), with planted results where a run
must regress.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from quantbench import handlers, metrics
from quantbench.compact import SUMMARY_KEY, decode_summary
from quantbench.driver import RUN_NOW_ANNOTATION, Driver
from quantbench.kube import Kube
from quantbench.naming import job_name
from quantbench.settings import OperatorSettings
from tests.cluster.kube import Cluster, wait_for
from tests.operator import factories
from tests.operator.argocd import health
from tests.operator.harness import OPERATOR_NS, OPERATOR_SA, Bench, result_for, steps_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]

LATENCY = [{"name": "latency", "type": "latency", "inputLen": 512, "outputLen": 128}]
ONE_VARIANT = [{"name": "bf16", "precision": "bf16"}]
Results = Callable[[str, str], str]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, *args: int) -> None:
        self.now = datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def iso(*args: int) -> str:
    return datetime(*args, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Recurring:
    """One benchmark driven by an in-process driver with the test's clock."""

    def __init__(self, bench: Bench, driver: Driver, clock: Clock) -> None:
        self.bench = bench
        self.driver = driver
        self.clock = clock

    def reconcile(self) -> dict[str, Any]:
        self.driver.reconcile(self.bench.ns, self.bench.name)
        return self.bench.status()

    def current(self) -> str | None:
        run: dict[str, Any] = self.bench.status().get("currentRun") or {}
        return run.get("id")

    def finish(
        self, spec: dict[str, Any], results: Results | None = None, timeout: float = 90
    ) -> dict[str, Any]:
        """Play every Job of the run in progress until the driver ends it; the finished history entry."""
        rid = self.current()
        assert rid is not None, "no run in progress"
        produce = results or (lambda variant, step: result_for(spec, variant, step))
        names = [v["name"] for v in spec["variants"]]

        def ended() -> bool:
            status = self.reconcile()
            if not status.get("currentRun"):
                return True
            for variant in names:
                for step in steps_of(spec):
                    name = job_name(self.bench.name, rid, variant, step)
                    if self.bench.kube.get("Job", self.bench.ns, name) is None:
                        continue
                    if not self.bench.step_done(rid, variant, step):
                        self.bench.publish_result(rid, variant, step, produce(variant, step))
                        self.bench.cluster.finish_job(self.bench.ns, name, "succeeded")
                        break
            return False

        wait_for(ended, timeout, f"run {rid} of {self.bench.name} to end")
        entry: dict[str, Any] = self.bench.status()["history"][0]
        assert entry["id"] == rid
        return entry


@pytest.fixture
def recurring(
    cluster: Cluster, kube_admin: Kube, bench: Bench, tmp_path: Path
) -> Iterator[Callable[..., Recurring]]:
    api = cluster.service_account_client(OPERATOR_NS, OPERATOR_SA, create=False)
    settings = OperatorSettings(results_dir=str(tmp_path / "results"))
    made: list[Driver] = []

    def make(start: datetime, name: str | None = None) -> Recurring:
        clock = Clock(start)
        driver = Driver(Kube(api), settings, clock=clock)
        made.append(driver)
        b = bench if name is None else Bench(bench.cluster, bench.kube, bench.ns, name, bench.ca_file)
        return Recurring(b, driver, clock)

    yield make
    for d in made:
        d.close()
    api.close()


def scheduled(**kw: Any) -> dict[str, Any]:
    return factories.spec_dict(variants=ONE_VARIANT, workloads=LATENCY, accuracy=False, **kw)


def test_daily_schedule_follows_dst_and_prunes_old_runs(
    recurring: Callable[..., Recurring], tmp_path: Path
) -> None:
    r = recurring(datetime(2027, 3, 26, 10, 0, tzinfo=UTC))
    spec = scheduled(schedule="0 9 * * *", timeZone="Europe/Berlin", historyLimit=2)
    r.bench.create(spec)
    r.reconcile()
    first = r.finish(spec)
    assert first["trigger"] == "Created" and first["generation"] == 1
    status = r.bench.status()
    assert status["nextRunTime"] == iso(2027, 3, 27, 8)  # 09:00 CET
    first_cms = r.bench.names("ConfigMap", first["id"])
    assert first_cms and (tmp_path / "results" / r.bench.ns / "llama" / first["id"]).is_dir()

    r.clock.set(2027, 3, 27, 7, 59)
    assert not r.reconcile().get("currentRun")
    r.clock.set(2027, 3, 27, 8, 0)
    r.reconcile()
    second = r.finish(spec)
    assert second["trigger"] == "Schedule" and second["scheduledAt"] == iso(2027, 3, 27, 8)
    # The clocks move to CEST on 28 March 2027: 09:00 local is 07:00 UTC.
    assert r.bench.status()["nextRunTime"] == iso(2027, 3, 28, 7)
    r.clock.set(2027, 3, 28, 6, 59)
    assert not r.reconcile().get("currentRun")
    r.clock.set(2027, 3, 28, 7, 0, 30)
    r.reconcile()
    third = r.finish(spec)
    assert third["scheduledAt"] == iso(2027, 3, 28, 7)
    # historyLimit 2: the first run's ConfigMaps and stored results are gone.
    status = r.bench.status()
    assert [h["id"] for h in status["history"]] == [third["id"], second["id"]]
    assert r.bench.names("ConfigMap", first["id"]) == set()
    assert not (tmp_path / "results" / r.bench.ns / "llama" / first["id"]).exists()
    assert r.bench.names("ConfigMap", second["id"])


def test_missed_schedules_run_once_and_not_past_the_deadline(recurring: Callable[..., Recurring]) -> None:
    r = recurring(datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    spec = scheduled(schedule="0 * * * *", startingDeadlineSeconds=600)
    r.bench.create(spec)
    r.reconcile()
    r.finish(spec)
    # The operator was down from 00:30 to 05:05: five schedule times passed, one run starts.
    r.clock.set(2027, 1, 1, 5, 5)
    r.reconcile()
    caught_up = r.finish(spec)
    assert caught_up["scheduledAt"] == iso(2027, 1, 1, 5)
    assert not r.reconcile().get("currentRun")
    missed = r.bench.wait_event("MissedSchedule")
    assert "4 schedule times passed" in missed["message"]
    # Down again until 07:20: the 07:00 run is 20 minutes late, past the 10-minute deadline: skipped.
    r.clock.set(2027, 1, 1, 7, 20)
    status = r.reconcile()
    assert not status.get("currentRun") and len(status["history"]) == 2
    assert status["lastScheduleTime"] == iso(2027, 1, 1, 7) and status["nextRunTime"] == iso(2027, 1, 1, 8)
    skipped = wait_for(
        lambda: next((e for e in r.bench.events() if "startingDeadlineSeconds" in e["message"]), None),
        30,
        "the skipped-run event",
    )
    assert skipped["type"] == "Warning"


def test_forbid_waits_and_run_now_is_taken_once(recurring: Callable[..., Recurring]) -> None:
    r = recurring(datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    spec = scheduled(schedule="0 * * * *")  # concurrencyPolicy Forbid by default
    r.bench.create(spec)
    r.reconcile()
    first = r.current()
    r.clock.set(2027, 1, 1, 1, 0)
    r.reconcile()
    assert r.current() == first  # the 01:00 run waits for the run in progress
    r.finish(spec)
    r.reconcile()
    second = r.bench.status()["currentRun"]
    assert second["trigger"] == "Schedule" and second["scheduledAt"] == iso(2027, 1, 1, 1)
    r.finish(spec)
    # run-now: one run, and the annotation is removed when it is taken.
    r.clock.set(2027, 1, 1, 1, 20)
    r.bench.kube.merge_patch(
        "QuantBenchmark",
        r.bench.ns,
        r.bench.name,
        {"metadata": {"annotations": {RUN_NOW_ANNOTATION: "true"}}},
    )
    r.reconcile()
    now_run = r.bench.status()["currentRun"]
    assert now_run["trigger"] == "RunNow"
    annotations = (r.bench.get() or {})["metadata"].get("annotations") or {}
    assert RUN_NOW_ANNOTATION not in annotations
    r.finish(spec)
    assert not r.reconcile().get("currentRun")


def test_replace_ends_the_run_in_progress(recurring: Callable[..., Recurring]) -> None:
    r = recurring(datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    spec = scheduled(schedule="0 * * * *", concurrencyPolicy="Replace")
    r.bench.create(spec)
    r.reconcile()
    first = r.current()
    assert first is not None
    wait_for(lambda: r.bench.names("Deployment", first), 30, "the first run's server")
    r.clock.set(2027, 1, 1, 1, 0)
    status = r.reconcile()
    assert status["currentRun"]["trigger"] == "Schedule" and status["currentRun"]["id"] != first
    replaced = status["history"][0]
    assert replaced["id"] == first and replaced["phase"] == "Failed"
    assert r.bench.names("Deployment", first) == set() and r.bench.names("Job", first) == set()
    assert health(r.bench.get() or {})[0] == "Progressing"
    assert r.bench.wait_event("RunReplaced")
    r.finish(spec)


def capture(name: str, body: dict[str, Any] | None) -> None:
    """With QUANTBENCH_CAPTURE_DIR set, keep the object the operator wrote (test data of test_argocd_health)."""
    folder = os.environ.get("QUANTBENCH_CAPTURE_DIR")
    if folder and body is not None:
        keep = {k: body[k] for k in ("apiVersion", "kind", "spec", "status")}
        keep["metadata"] = {k: body["metadata"][k] for k in ("name", "namespace", "generation")}
        keep["metadata"]["namespace"] = "bench"
        Path(folder, f"{name}.json").write_text(json.dumps(keep, indent=1, sort_keys=True) + "\n")


def stored_summary(bench: Bench, entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry's full summary, from its summary ConfigMap (history entries hold key figures only)."""
    cm = bench.kube.get("ConfigMap", bench.ns, entry["summaryConfigMap"])
    assert cm is not None, entry["summaryConfigMap"]
    return decode_summary(cm["binaryData"][SUMMARY_KEY]).to_wire()


def _flags(text: str, namespace: str) -> dict[str, float]:
    """variant -> value of quantbench_regressions for the benchmark llama in ``namespace``."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"quantbench_regressions\{(.*)\} (\S+)$", line)
        if m is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if found["benchmark"] == "llama" and found["namespace"] == namespace:
            out[found["variant"]] = float(m.group(2))
    return out


def _exported(body: dict[str, Any]) -> str:
    handlers.export_state(
        event={"type": "MODIFIED"},
        body=body,
        name=body["metadata"]["name"],
        namespace=body["metadata"]["namespace"],
    )
    registry = CollectorRegistry()
    registry.register(metrics.BENCHMARKS)
    return generate_latest(registry).decode()


def test_planted_regression_is_named_with_its_cause_and_cleared_by_a_clean_run(
    recurring: Callable[..., Recurring],
) -> None:
    # Dates before today: the driver measures a server's start from its Deployment's creationTimestamp (real
    # time), so a test clock ahead of real time would time out any server not yet Ready when a pass looks.
    r = recurring(datetime(2026, 2, 1, 3, 0, tzinfo=UTC))
    workloads = [
        *LATENCY,
        {"name": "sweep", "type": "throughput", "batchSizes": [16], "inputLen": 512, "outputLen": 128},
    ]
    spec = factories.spec_dict(
        variants=ONE_VARIANT, workloads=workloads, server={"image": "vllm/vllm-openai:v0.11.0"}
    )
    spec["accuracy"] = {"numFewshot": 8, "limit": 40}

    def results(
        slowdown: float = 1.0,
        wrong_every: int = 0,
        version: str = "0.11.0",
        spread: float = 0.0,
        sweep: float = 1.0,
    ) -> Results:
        def make(variant: str, step: str) -> str:
            if step == "accuracy":
                return factories.accuracy_result(variant, 40, wrong_every=wrong_every)
            workload = next(w for w in workloads if f"wl-{w['name']}" == step)
            return factories.loadgen_result(variant, workload, slowdown, version, spread, sweep)

        return make

    r.bench.create(spec)
    r.reconcile()
    assert health(r.bench.get() or {})[0] == "Progressing"
    capture("running", r.bench.get())
    clean = r.finish(spec, results())
    assert health(r.bench.get() or {})[0] == "Healthy"
    capture("succeeded", r.bench.get())
    assert clean["provenance"]["variants"][0]["vllmVersion"] == "0.11.0"
    conds = {c["type"]: c for c in r.bench.status()["conditions"]}
    assert conds["Regressed"]["status"] == "False" and conds["Regressed"]["reason"] == "NoReference"

    # A new image (a GitOps commit: generation 2), 30% slower, and 10 of 40 answers now wrong.
    r.clock.set(2026, 2, 2, 3, 0)
    spec["server"]["image"] = "vllm/vllm-openai:v0.11.1"
    r.bench.kube.merge_patch("QuantBenchmark", r.bench.ns, r.bench.name, {"spec": {"server": spec["server"]}})
    r.reconcile()
    bad = r.finish(spec, results(slowdown=1.3, wrong_every=4, version="0.11.1"))
    assert bad["generation"] == 2 and bad["trigger"] == "SpecChanged" and bad["referenceRun"] == clean["id"]
    found = {(g["metric"], g["at"]) for g in bad["regressions"]}
    assert ("msPerTokenBs1", "batch 1") in found and ("accuracy", "gsm8k") in found
    assert ("outputTokensPerSecond", "batch 16") in found
    accuracy = next(g for g in bad["regressions"] if g["family"] == "accuracy")
    assert accuracy["before"] == 1.0 and accuracy["after"] == 0.75 and accuracy["pValue"] < 0.05
    body = r.bench.get() or {}
    regressed = {c["type"]: c for c in body["status"]["conditions"]}["Regressed"]
    assert regressed["status"] == "True"
    for words in (
        "bf16",
        "msPerTokenBs1",
        "7 -> 9.1 ms/token",
        "image vllm/vllm-openai:v0.11.0 -> vllm/vllm-openai:v0.11.1",
        "vLLM 0.11.0 -> 0.11.1",
    ):
        assert words in regressed["message"], (words, regressed["message"])
    state, message = health(body)
    assert state == "Degraded" and message.startswith("regressed: ") and "vLLM 0.11.0 -> 0.11.1" in message
    capture("regressed", body)
    event = r.bench.wait_event("Regressed")
    assert event["type"] == "Warning" and "vLLM 0.11.0 -> 0.11.1" in event["message"]
    assert _flags(_exported(body), r.bench.ns) == {"bf16": 3.0}  # latency, throughput, accuracy

    # A clean run (run-now) clears the condition and the flag.
    r.clock.set(2026, 2, 3, 3, 0)
    r.bench.kube.merge_patch(
        "QuantBenchmark", r.bench.ns, r.bench.name, {"metadata": {"annotations": {RUN_NOW_ANNOTATION: ""}}}
    )
    r.reconcile()
    r.finish(spec, results(version="0.11.1", spread=0.15))
    body = r.bench.get() or {}
    regressed = {c["type"]: c for c in body["status"]["conditions"]}["Regressed"]
    assert regressed["status"] == "False" and regressed["reason"] == "NoRegression"
    assert body["status"]["regressions"] == []
    assert r.bench.wait_event("RegressionCleared")
    assert health(body)[0] == "Healthy"
    capture("cleared", body)
    assert _flags(_exported(body), r.bench.ns) == {"bf16": 0.0}

    # 13% less throughput, beyond the 10% tolerance but inside both runs' noise intervals: no regression.
    r.clock.set(2026, 2, 4, 3, 0)
    r.bench.kube.merge_patch(
        "QuantBenchmark", r.bench.ns, r.bench.name, {"metadata": {"annotations": {RUN_NOW_ANNOTATION: ""}}}
    )
    r.reconcile()
    noisy = r.finish(spec, results(version="0.11.1", spread=0.15, sweep=1 / 0.87))
    assert noisy["regressions"] == [] and noisy["referenceRun"] != bad["id"]
    sweep = r.bench.status()["summary"]["variants"][0]["throughput"][0]
    before = stored_summary(r.bench, r.bench.status()["history"][1])["variants"][0]["throughput"][0]
    assert sweep["outputTokensPerSecond"] < 0.88 * before["outputTokensPerSecond"]  # beyond the tolerance
