from __future__ import annotations

import concurrent.futures
import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from quantbench.api.summary import RunSummary, VariantSummary
from quantbench.api.v1alpha1 import Phase, QuantBenchmarkStatus, RunRecord
from quantbench.compact import summary_config_map
from quantbench.driver import (
    NODES_FRESH_S,
    RUN_NOW_ANNOTATION,
    SWEPT_KINDS,
    Driver,
    StatusConflict,
    owner_of,
    spec_problem,
)
from quantbench.kube import ApiError, Kube
from quantbench.manifests.common import Owner
from quantbench.settings import OperatorSettings
from tests.operator.factories import spec_dict


def body(spec: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "b", "namespace": "ns", "uid": "u"}, "spec": spec}


def test_spec_problems_name_the_field() -> None:
    assert spec_problem(body(spec_dict())) is None
    problem = spec_problem(body(spec_dict(baseline="int4")))
    assert problem is not None and "spec.baseline" in problem and "int4" in problem
    problem = spec_problem(body({**spec_dict(), "serverr": {}}))
    assert problem is not None and "spec.serverr" in problem and "did you mean 'server'" in problem


def test_owner() -> None:
    owner = owner_of(body(spec_dict()))
    assert (owner.name, owner.namespace, owner.uid) == ("b", "ns", "u")


class _LaggingRbacCache(Kube):
    """The apiserver's answer while its RBAC cache has not seen a just-created Role yet: 404 naming the Role
    (a race a real apiserver produces only now and then, so it is played here)."""

    def __init__(self, misses: int) -> None:
        self.misses = misses
        self.created: list[str] = []

    def create(self, obj: dict[str, Any]) -> bool:
        if self.misses > 0:
            self.misses -= 1
            raise ApiError(404, "POST", "/rolebindings", 'roles.rbac.authorization.k8s.io "x-jobs" not found')
        self.created.append(obj["metadata"]["name"])
        return True


def test_role_binding_waits_for_the_rbac_cache() -> None:
    kube = _LaggingRbacCache(misses=3)
    Driver(kube, OperatorSettings())._create_role_binding({"metadata": {"name": "x-jobs"}}, delay_s=0)
    assert kube.created == ["x-jobs"]
    stuck = _LaggingRbacCache(misses=100)
    with pytest.raises(ApiError, match="404"):
        Driver(stuck, OperatorSettings())._create_role_binding(
            {"metadata": {"name": "x"}}, attempts=3, delay_s=0
        )


class _ScheduledBenchmark(Kube):
    """A benchmark whose last run started a week ago, on a Monday-03:00 schedule; records status patches."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return {
            "metadata": {"name": "b", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": spec_dict(schedule="0 3 * * 1"),
            "status": {
                "observedGeneration": 1,
                "nextRunTime": "2026-11-23T03:00:00Z",
                "history": [
                    {"id": "r1", "generation": 1, "phase": "Succeeded", "startedAt": "2026-11-16T03:00:00Z"}
                ],
            },
        }

    def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        self.patches.append(patch)
        return patch

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        return []  # no children left over from earlier runs


def test_the_driver_decides_at_the_time_of_its_clock() -> None:
    kube = _ScheduledBenchmark()
    before = Driver(kube, OperatorSettings(), clock=lambda: datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    assert before.reconcile("ns", "b") == 3600.0  # an hour until the next scheduled run
    assert kube.patches == []


class _StoredSummaries(Kube):
    """ConfigMaps by name; records Events."""

    def __init__(self, configmaps: dict[str, dict[str, Any]]) -> None:
        self.configmaps = configmaps
        self.events: list[str] = []

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.configmaps.get(name) if kind == "ConfigMap" else None

    def event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(reason)


def test_the_reference_runs_full_summary_is_read_from_its_configmap() -> None:
    rows = [
        VariantSummary(
            variant="bf16", precision="bf16", phase="Succeeded", ms_per_token_bs1=7.0, verdict="Baseline"
        )
    ]
    summary = RunSummary(baseline="bf16", variants=rows)
    cm = summary_config_map(Owner("b", "ns", "u"), "r1", 1, summary)
    assert cm is not None
    kube = _StoredSummaries({"b-r1-summary": cm})
    driver = Driver(kube, OperatorSettings())
    t = datetime(2027, 1, 1, tzinfo=UTC)
    entry = RunRecord(
        id="r1", generation=1, phase=Phase.SUCCEEDED, started_at=t, summary_config_map="b-r1-summary"
    )
    assert driver._reference_summary(body(spec_dict()), entry) == summary
    gone = entry.model_copy(update={"summary_config_map": "b-r0-summary"})
    assert driver._reference_summary(body(spec_dict()), gone) is None
    driver.close()
    assert kube.events == ["ReferenceUnavailable"]


class _Benchmark(Kube):
    """One stored benchmark: a status patch names the resourceVersion it was decided over; an other writer
    (``meddle``) changes the object between the driver's read and its write."""

    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = stored
        self.version = 1
        self.patches: list[dict[str, Any]] = []
        self.meddle: Callable[[dict[str, Any]], None] | None = None
        self.listed: list[str] = []

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        assert kind == "QuantBenchmark"
        return copy.deepcopy(self.stored)

    def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> dict[str, Any]:
        self.patches.append(copy.deepcopy(patch))
        if self.meddle is not None:
            self.meddle(self.stored)
            self.meddle = None
            self._bump()
        if patch["metadata"]["resourceVersion"] != self.stored["metadata"]["resourceVersion"]:
            raise ApiError(409, "PATCH", "/status", "the object has been modified")
        self.stored["status"] = {**self.stored.get("status", {}), **patch["status"]}
        self._bump()
        return copy.deepcopy(self.stored)

    def _bump(self) -> None:
        self.version += 1
        self.stored["metadata"]["resourceVersion"] = str(self.version)

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        self.listed.append(kind)
        return []


def stored_benchmark() -> dict[str, Any]:
    meta = {"name": "b", "namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "1"}
    return {"metadata": meta, "spec": spec_dict(), "status": {"observedGeneration": 1}}


def _kopf_bookkeeping(obj: dict[str, Any]) -> None:
    obj["metadata"]["annotations"] = {"quantbench.dev/last-handled-configuration": "{}"}


def _other_status_writer(obj: dict[str, Any]) -> None:
    obj["status"] = {**obj["status"], "phase": "Failed"}


def _spec_edit(obj: dict[str, Any]) -> None:
    obj["metadata"]["generation"] = 2


def _run_now(obj: dict[str, Any]) -> None:
    obj["metadata"]["annotations"] = {RUN_NOW_ANNOTATION: "now"}


def test_a_status_write_over_a_change_the_decision_does_not_rest_on_goes_through() -> None:
    kube = _Benchmark(stored_benchmark())
    kube.meddle = _kopf_bookkeeping  # kopf records the handled spec in an annotation meanwhile
    driver = Driver(kube, OperatorSettings())
    read = kube.get("QuantBenchmark", "ns", "b")
    assert read is not None
    driver._patch_status(read, QuantBenchmarkStatus(observed_generation=1, phase=Phase.RUNNING))
    assert [p["metadata"]["resourceVersion"] for p in kube.patches] == ["1", "2"]
    assert kube.stored["status"]["phase"] == "Running"
    assert read["metadata"]["resourceVersion"] == kube.stored["metadata"]["resourceVersion"]


@pytest.mark.parametrize("meddle", [_other_status_writer, _spec_edit, _run_now])
def test_a_status_write_over_a_change_the_decision_rests_on_is_a_conflict(
    meddle: Callable[[dict[str, Any]], None],
) -> None:
    kube = _Benchmark(stored_benchmark())
    kube.meddle = meddle
    driver = Driver(kube, OperatorSettings())
    read = kube.get("QuantBenchmark", "ns", "b")
    assert read is not None
    with pytest.raises(StatusConflict):
        driver._patch_status(read, QuantBenchmarkStatus(observed_generation=1, phase=Phase.RUNNING))
    assert len(kube.patches) == 1
    assert kube.stored["status"].get("phase") != "Running"


def test_a_second_status_write_of_one_reconcile_goes_over_the_first() -> None:
    kube = _Benchmark(stored_benchmark())
    driver = Driver(kube, OperatorSettings())
    read = kube.get("QuantBenchmark", "ns", "b")
    assert read is not None
    driver._patch_status(read, QuantBenchmarkStatus(observed_generation=1, phase=Phase.RUNNING))
    kube.meddle = _kopf_bookkeeping
    driver._patch_status(read, QuantBenchmarkStatus(observed_generation=1, phase=Phase.SUCCEEDED))
    assert kube.stored["status"]["phase"] == "Succeeded"


def test_reconciles_of_many_benchmarks_share_one_node_list() -> None:
    kube = _Benchmark(stored_benchmark())
    driver = Driver(kube, OperatorSettings())
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: driver._nodes(), range(16)))
    assert kube.listed == ["Node"]
    driver._node_list = (driver._node_list[0] - NODES_FRESH_S, []) if driver._node_list else None
    driver._nodes()
    assert kube.listed == ["Node", "Node"]


def test_a_benchmark_that_never_recorded_a_run_has_nothing_to_sweep() -> None:
    fresh = stored_benchmark()
    fresh["status"] = {}
    fresh["spec"]["suspend"] = True  # no run starts: only what precedes the start is looked at
    kube = _Benchmark(fresh)
    Driver(kube, OperatorSettings()).reconcile("ns", "b")
    assert not set(kube.listed) & set(SWEPT_KINDS)
    ran = stored_benchmark()
    ran["status"]["history"] = [
        {"id": "r1", "generation": 1, "phase": "Succeeded", "startedAt": "2026-11-16T03:00:00Z"}
    ]
    ran["spec"]["suspend"] = True
    kube = _Benchmark(ran)
    Driver(kube, OperatorSettings()).reconcile("ns", "b")
    assert sorted(set(kube.listed) & set(SWEPT_KINDS)) == sorted(SWEPT_KINDS)
