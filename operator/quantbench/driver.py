"""Drives one QuantBenchmark: starts runs, reconciles the run in progress, finishes it with its summary.

This is the side-effecting shell around the pure modules: it reads the resource and its children through
`quantbench.kube`, asks `quantbench.reconcile.decide` what to do, applies that, records Events and patches
the status. It holds no state that matters between calls (a cache of parsed run snapshots and of which
server logs were read only saves work), so an operator restarted at any point carries on from what the
cluster holds.

Spec changes during a run: the run finishes with the spec of the generation it started with (kept in the
run ConfigMap); when it ends, a new run starts for the new generation. A change never restarts a run.
"""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from quantbench import regression
from quantbench.analysis.run_results import RunResults
from quantbench.analysis.summary import SummarySettings, build_summary
from quantbench.api.summary import RunSummary
from quantbench.api.v1alpha1 import (
    API_VERSION,
    KIND,
    ConcurrencyPolicy,
    Phase,
    ProbeStatus,
    QuantBenchmarkSpec,
    QuantBenchmarkStatus,
    Regression,
    RunProvenance,
    RunRecord,
    Trigger,
    VariantPhase,
    VariantProvenance,
    VariantStatus,
)
from quantbench.api.validation import SpecError, benchmark_from_dict
from quantbench.collect import run_results
from quantbench.compact import (
    SUMMARY_KEY,
    bounded_summary,
    compact_history,
    compact_record,
    decode_summary,
    summary_config_map,
    worst_regressions,
)
from quantbench.deadlines import run_deadline_s
from quantbench.failures import Failure, job_finished
from quantbench.gpus import GPU_PRODUCT_LABEL, gpu_driver
from quantbench.kube import CHILD_KINDS, ApiError, Kube
from quantbench.manifests.common import Owner
from quantbench.manifests.run import RunSnapshot, run_configmap, snapshot_from_configmap
from quantbench.manifests.server import model_of, revision_of, server_image
from quantbench.measured import measured_spec_hash
from quantbench.naming import GROUP as LABEL_GROUP
from quantbench.naming import (
    LABEL_BENCHMARK,
    LABEL_RUN,
    LABEL_VARIANT,
    labels,
    run_config_name,
    run_id,
    selector,
)
from quantbench.objects import (
    ConfigMap,
    Deployment,
    Job,
    Node,
    as_configmaps,
    as_deployments,
    as_jobs,
    as_nodes,
    as_pods,
    created_at,
    labels_of,
    name_of,
    node_of,
)
from quantbench.plan import TERMINAL_PHASES, plan_run, pools_for_spec
from quantbench.policy import policy_problems
from quantbench.reconcile import (
    Create,
    Decision,
    Delete,
    Observed,
    RunContext,
    decide,
    ended,
    initial_probe_statuses,
    initial_statuses,
    parse_time,
)
from quantbench.rejection import REFUSED_STATUSES, is_own, name_taken, refusal
from quantbench.schedule import due
from quantbench.settings import OperatorSettings
from quantbench.sizes import configmap_problems
from quantbench.sources import SourceFacts, facts_from_objects, referenced, unavailable
from quantbench.status import conditions, pruned, run_phase, status_patch, with_history
from quantbench.vllm_log import weights_gib_from_log

log = logging.getLogger(__name__)
MAX_PASSES = 4
RUN_NOW_ANNOTATION = f"{LABEL_GROUP}/run-now"
QUANTBENCH_VERSION = package_version("quantbench")
POD_CREATE_GRACE_S = 5.0  # a Job with no pod after this long: read why (FailedCreate Events)
SWEPT_KINDS = ("Deployment", "Service", "Job", "ServiceAccount")
STATUS_WRITE_ATTEMPTS = 3
OBSERVED_KINDS = ("Deployment", "Service", "Pod")  # listed beside a run's Jobs and ConfigMaps
NODES_FRESH_S = 1.0  # how old a Node list may be when pools are planned


def utcnow() -> datetime:
    return datetime.now(UTC)


def owner_of(body: dict[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def run_now_requested(body: dict[str, Any]) -> bool:
    return RUN_NOW_ANNOTATION in ((body.get("metadata") or {}).get("annotations") or {})


def spec_problem(body: dict[str, Any], settings: OperatorSettings | None = None) -> str | None:
    """What is wrong with the benchmark's spec, or what it asks beyond the operator's policy; None if fine."""
    doc = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"]},
        "spec": body.get("spec") or {},
    }
    try:
        bench = benchmark_from_dict(doc, f"{body['metadata']['namespace']}/{body['metadata']['name']}")
    except SpecError as exc:
        return "; ".join(exc.problems)
    refused = configmap_problems(bench.spec)
    refused += policy_problems(bench.spec, settings) if settings is not None else []
    return "; ".join(refused) if refused else None


def decision_basis(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a reconcile decides from: a write to the benchmark that leaves this equal (kopf's annotations,
    labels) cannot have changed the decision."""
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        run_now_requested(body),
        body.get("spec"),
        body.get("status"),
    )


class StatusConflict(Exception):
    """The benchmark changed between reading it and writing its status: reconcile again from what is there."""


class Driver:
    def __init__(
        self, kube: Kube, settings: OperatorSettings, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock  # the time every decision is made at: tests drive it
        self._node_drivers: dict[str, str] = {}
        self._snapshots: dict[tuple[str, str, str], RunSnapshot] = {}
        self._logs_read: set[str] = set()
        self._node_products: dict[str, str] = {}
        self._fresh: set[tuple[str, str, str]] = set()  # runs started by this process, no child made yet
        self._run_objects_made: set[tuple[str, str, str]] = set()
        self._swept: set[tuple[str, str]] = set()  # benchmarks whose ended runs' leftovers were removed
        self.reconciles = 0  # reconcile passes made (a figure for benchmarks)
        self.reconcile_seconds = 0.0  # their time, summed over threads (likewise)
        self._count_lock = threading.Lock()
        # The cluster's Nodes, listed at most once per NODES_FRESH_S for all benchmarks together.
        self._node_list: tuple[float, list[Node]] | None = None
        self._node_lock = threading.Lock()
        self._posted: set[tuple[str, str, str, str]] = (
            set()
        )  # Warnings posted (namespace, name, reason, text)
        # Fan-out of independent API calls so a step's objects appear together; a pool each for creates and
        # deletes, for a pass's lists and for Events, so that a run's creates never queue behind the lists
        # and Events of other benchmarks' passes.
        self._fanout = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="api")
        self._lists = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="list")
        self._events = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="event")

    def close(self) -> None:
        """Wait for the API calls in flight (Events posted without waiting among them) and stop the pools."""
        for pool in (self._fanout, self._lists, self._events):
            pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------------ entry
    def reconcile(self, namespace: str, name: str) -> float | None:
        """One reconcile of the benchmark; returns seconds until it must be looked at again (None: resync)."""
        started = time.monotonic()
        try:
            return self._reconcile(namespace, name)
        finally:
            with self._count_lock:  # not the Node list's lock: that one is held through a list call
                self.reconciles += 1
                self.reconcile_seconds += time.monotonic() - started

    def _reconcile(self, namespace: str, name: str) -> float | None:
        body = self.kube.get(KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        status = self._status_of(body)
        generation = int(body["metadata"].get("generation") or 1)
        now = self.clock()
        if (namespace, name) not in self._swept and (status.current_run is not None or status.history):
            # (A benchmark that never recorded a run has no children: every run is recorded before its
            # first child is made.)
            self._sweep(owner_of(body), status.current_run.id if status.current_run else None)
        if status.current_run is not None and self._replacing(body, status, now):
            status = self._replace(body, status)
        if status.current_run is None:
            started = self._maybe_start(body, status, generation, now)
            if started is None:
                return self._until_next(status, now)
            status = started
        assert status.current_run is not None
        snapshot = self._snapshot(body, status)
        if snapshot is None:
            return None
        longest = max((len(lane) for lane in snapshot.plan.lanes), default=1)
        ctx = RunContext(
            owner_of(body),
            snapshot.run_id,
            snapshot.generation,
            snapshot.spec,
            snapshot.plan,
            self.settings,
            started_at=snapshot.started_at,
            deadline_s=run_deadline_s(snapshot.spec, longest, self.settings.probe_timeout_seconds),
        )
        variants = status.variants or initial_statuses(ctx.plan)
        probes = status.probes or initial_probe_statuses(ctx.plan)
        decision: Decision | None = None
        key = (namespace, name, snapshot.run_id)
        # Deletes wait until the status that records why is written: a crash or a failed patch in
        # between must not lose a result whose server is already gone (the next pass decides the same).
        deletes: list[Delete] = []
        for _ in range(MAX_PASSES):
            fresh = key in self._fresh
            decision = self._pass(body, ctx, variants, probes, fresh)
            deletes += [d for d in decision.actions if isinstance(d, Delete) and d not in deletes]
            if key not in self._run_objects_made:
                # The servers exist now; then what the run's Jobs will need (again after a restart:
                # creation is idempotent), and the Event.
                refused = self._create_run_objects(ctx.owner, snapshot)
                if refused is not None:
                    self._refuse_run(body, status, snapshot, refused)
                    return None
            if fresh:
                self._fresh.discard(key)
                lanes = "; ".join(" -> ".join(lane) for lane in snapshot.plan.lanes) or "none"
                self._note(
                    body,
                    "Normal",
                    "RunStarted",
                    f"run {snapshot.run_id} of generation {snapshot.generation} started; lanes: {lanes}",
                )
            advanced = ended(decision, variants)
            variants, probes = decision.variants, decision.probes
            if not advanced or decision.finished:
                break
        assert decision is not None
        if decision.finished:
            self._finish(body, status.model_copy(update={"probes": probes}), snapshot, variants)
            return self._until_next(
                self._status_of(self.kube.get(KIND, namespace, name) or body), self.clock()
            )
        new = status.model_copy(update={"variants": variants, "probes": probes, "phase": Phase.RUNNING})
        new = new.model_copy(update={"conditions": conditions(new, self.clock(), generation)})
        if new != status:
            self._patch_status(body, new)
        list(self._fanout.map(lambda a: self.kube.delete(a.kind, namespace, a.name), deletes))
        return None

    def _refuse_run(
        self, body: dict[str, Any], status: QuantBenchmarkStatus, snapshot: RunSnapshot, refused: Failure
    ) -> None:
        """A run-wide object was refused: the run cannot go on; every unfinished variant fails with why."""
        self._note(body, "Warning", str(refused.reason), f"run {snapshot.run_id}: {refused.message}")
        variants = [
            v
            if v.phase in (VariantPhase.SUCCEEDED, VariantPhase.UNSUPPORTED)
            else v.model_copy(
                update={
                    "phase": VariantPhase.FAILED,
                    "reason": str(refused.reason),
                    "message": refused.message,
                    "step": None,
                }
            )
            for v in (status.variants or initial_statuses(snapshot.plan))
        ]
        self._finish(body, status, snapshot, variants)

    def _sweep(self, owner: Owner, current: str | None) -> None:
        """Once per process and benchmark: delete what runs other than the current one still hold (an
        operator stopped between recording a finished run and tearing it down leaves its servers)."""
        sel = selector({LABEL_BENCHMARK: labels(owner.name)[LABEL_BENCHMARK]})
        listed = self._fanout.map(lambda kind: self.kube.list(kind, owner.namespace, sel), SWEPT_KINDS)
        for kind, objects in zip(SWEPT_KINDS, listed, strict=True):
            for obj in objects:
                run = (obj["metadata"].get("labels") or {}).get(LABEL_RUN)
                if run is not None and run != current:
                    self.kube.delete(kind, owner.namespace, obj["metadata"]["name"])
                    if kind == "ServiceAccount":
                        for rbac_kind in ("RoleBinding", "Role"):
                            self.kube.delete(rbac_kind, owner.namespace, obj["metadata"]["name"])
        self._swept.add((owner.namespace, owner.name))

    # ------------------------------------------------------------------------------------ status
    @staticmethod
    def _status_of(body: dict[str, Any]) -> QuantBenchmarkStatus:
        raw = {k: v for k, v in (body.get("status") or {}).items() if k in _STATUS_KEYS}
        try:
            return QuantBenchmarkStatus.model_validate(raw)
        except ValidationError as exc:
            log.warning("ignoring an unreadable status of %s: %s", body["metadata"]["name"], exc)
            return QuantBenchmarkStatus()

    def _patch_status(self, body: dict[str, Any], status: QuantBenchmarkStatus) -> None:
        """Write the status only over the version this reconcile read (or last wrote): a concurrent writer
        makes it a StatusConflict, never a lost update.

        A write that changed nothing the decision rests on (kopf's own bookkeeping annotations, a label) is
        not a conflict: when the object read again has the same generation, spec, status, deletion mark and
        run-now request, the patch goes over its new version at once instead of a whole reconcile later."""
        meta = body["metadata"]
        patch = status_patch(status)
        for _ in range(STATUS_WRITE_ATTEMPTS):
            if meta.get("resourceVersion"):
                patch["metadata"] = {"resourceVersion": meta["resourceVersion"]}
            try:
                result = self.kube.merge_patch(KIND, meta["namespace"], meta["name"], patch, sub="status")
            except ApiError as exc:
                if exc.status != 409:
                    raise
                now = self.kube.get(KIND, meta["namespace"], meta["name"])
                if now is None or decision_basis(now) != decision_basis(body):
                    break
                meta["resourceVersion"] = now["metadata"].get("resourceVersion")
                continue
            if isinstance(result, dict) and result.get("metadata", {}).get("resourceVersion"):
                meta["resourceVersion"] = result["metadata"]["resourceVersion"]
                body["status"] = result.get("status")  # what this reconcile wrote is what it read now
            return
        raise StatusConflict(f"{meta['namespace']}/{meta['name']} changed since it was read")

    def _clear_run_now(self, body: dict[str, Any]) -> None:
        """Take the run-now request: remove the annotation so it starts one run only."""
        meta = body["metadata"]
        patch = {"metadata": {"annotations": {RUN_NOW_ANNOTATION: None}}}
        result = self.kube.merge_patch(KIND, meta["namespace"], meta["name"], patch)
        # The status writes that follow in this reconcile go over the version this patch made.
        if isinstance(result, dict) and result.get("metadata", {}).get("resourceVersion"):
            meta["resourceVersion"] = result["metadata"]["resourceVersion"]
            meta["annotations"] = result["metadata"].get("annotations") or {}
        self._note(body, "Normal", "RunNowTaken", f"{RUN_NOW_ANNOTATION}: run started; annotation removed")

    def _note(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event without waiting for it (Kube.event logs, never raises). A Warning already posted
        by this process is not posted again: a reconcile whose status write conflicted decides the same
        failures again."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"], reason, message)
        if type_ == "Warning":
            if key in self._posted:
                return
            self._posted.add(key)
        self._events.submit(self.kube.event, body, type_, reason, message)

    def _replacing(self, body: dict[str, Any], status: QuantBenchmarkStatus, now: datetime) -> bool:
        """Whether a run is due (schedule or run-now) while one is in progress under concurrencyPolicy
        Replace. (Under Forbid the due run waits: it starts when the current run ends, if still within
        startingDeadlineSeconds.)"""
        spec_raw = body.get("spec") or {}
        if (
            spec_raw.get("concurrencyPolicy") != ConcurrencyPolicy.REPLACE
            or spec_problem(body, self.settings) is not None
        ):
            return False
        if run_now_requested(body):
            return True
        spec = QuantBenchmarkSpec.model_validate(spec_raw)
        if spec.schedule is None or spec.suspend:
            return False
        d = due(
            spec.schedule,
            spec.time_zone,
            self._schedule_since(status, now),
            now,
            spec.starting_deadline_seconds,
        )
        return d.latest is not None and not d.too_late

    def _replace(self, body: dict[str, Any], status: QuantBenchmarkStatus) -> QuantBenchmarkStatus:
        """End the run in progress (concurrencyPolicy Replace): it is recorded as Failed, then its children
        go (record, then tear down: should the operator stop in between, the next start sweeps them)."""
        assert status.current_run is not None
        owner = owner_of(body)
        run = status.current_run
        now = self.clock()
        variants = [
            v
            if v.phase in TERMINAL_PHASES
            else v.model_copy(
                update={
                    "phase": VariantPhase.FAILED,
                    "reason": "Replaced",
                    "message": "a due run replaced this one (concurrencyPolicy Replace)",
                    "step": None,
                }
            )
            for v in status.variants
        ]
        record = run.model_copy(update={"phase": Phase.FAILED, "finished_at": now})
        limit = int((body.get("spec") or {}).get("historyLimit") or 10)
        pinned = self._pinned(body)
        history = compact_history(with_history(status.history, record, limit, pinned), pinned)
        new = status.model_copy(
            update={"phase": Phase.FAILED, "current_run": None, "variants": variants, "history": history}
        )
        self._patch_status(body, new)
        self._cleanup_run(owner, run.id, keep={h.id for h in history})
        self._forget_run(owner, run.id)
        self._note(
            body,
            "Warning",
            "RunReplaced",
            f"run {run.id} ended: a due run replaces it (concurrencyPolicy Replace)",
        )
        return new

    @staticmethod
    def _pinned(body: dict[str, Any]) -> str | None:
        reference = ((body.get("spec") or {}).get("regression") or {}).get("reference")
        return str(reference) if reference else None

    @staticmethod
    def _schedule_since(status: QuantBenchmarkStatus, now: datetime) -> datetime:
        """Every schedule time up to this one was taken (run or given up)."""
        if status.last_schedule_time or status.last_run_time:
            return status.last_schedule_time or status.last_run_time or now
        return status.history[0].started_at if status.history else now

    def _forget_run(self, owner: Owner, rid: str) -> None:
        """Drop what this process remembers of an ended run (and the Warnings it posted for the benchmark:
        the next run may meet the same failure and must say so)."""
        self._posted = {k for k in self._posted if k[:2] != (owner.namespace, owner.name)}
        self._snapshots.pop((owner.namespace, owner.name, rid), None)
        self._run_objects_made.discard((owner.namespace, owner.name, rid))
        self._fresh.discard((owner.namespace, owner.name, rid))

    @staticmethod
    def _until_next(status: QuantBenchmarkStatus, now: datetime) -> float | None:
        if status.next_run_time is None:
            return None
        return max(0.5, (status.next_run_time - now).total_seconds())

    # ------------------------------------------------------------------------------------ start
    def _maybe_start(
        self, body: dict[str, Any], status: QuantBenchmarkStatus, generation: int, now: datetime
    ) -> QuantBenchmarkStatus | None:
        spec_raw = body.get("spec") or {}
        problem = spec_problem(body, self.settings)
        if problem is not None:
            if status.observed_generation != generation:
                self._note(body, "Warning", "InvalidSpec", problem)
            new = status.model_copy(update={"observed_generation": generation, "phase": Phase.FAILED})
            new = new.model_copy(
                update={"conditions": conditions(new, now, generation, invalid_spec=problem)}
            )
            if new != status:
                self._patch_status(body, new)
            return None
        spec = QuantBenchmarkSpec.model_validate(spec_raw)
        run_now = run_now_requested(body)
        if spec.suspend and not run_now:
            new = status.model_copy(
                update={"phase": Phase.SUSPENDED, "observed_generation": generation, "next_run_time": None}
            )
            new = new.model_copy(update={"conditions": conditions(new, now, generation)})
            if new != status:
                self._patch_status(body, new)
            return None
        since = self._schedule_since(status, now)
        d = (
            due(spec.schedule, spec.time_zone, since, now, spec.starting_deadline_seconds)
            if spec.schedule is not None and not spec.suspend
            else None
        )
        taken = d.latest if d is not None else None
        measured = measured_spec_hash(spec)
        if status.measured_spec_hash is not None:
            # Edits of what is not measured (historyLimit, schedule, suspend, timeouts, regression, ...)
            # start no run.
            changed = status.measured_spec_hash != measured
        else:
            changed = status.observed_generation != generation
        trigger: Trigger | None = None
        if changed:
            trigger = Trigger.CREATED if status.observed_generation is None else Trigger.SPEC_CHANGED
        elif not status.history:
            trigger = Trigger.CREATED
        elif run_now:
            trigger = Trigger.RUN_NOW
        elif d is not None and d.latest is not None and not d.too_late:
            trigger = Trigger.SCHEDULE
        if d is not None and d.latest is not None and d.too_late and trigger is None:
            self._note(
                body,
                "Warning",
                "MissedSchedule",
                f"the run due at {d.latest:%Y-%m-%d %H:%M} UTC could not start within "
                f"startingDeadlineSeconds ({spec.starting_deadline_seconds} s); skipped"
                + (f" with {d.missed} earlier missed times" if d.missed else ""),
            )
        if trigger is None:
            resumed = status.phase == Phase.SUSPENDED  # the phase of the last run again
            new = status.model_copy(
                update={
                    "next_run_time": d.next if d is not None else None,
                    "last_schedule_time": taken or status.last_schedule_time,
                    "observed_generation": generation,
                    "phase": (status.history[0].phase if status.history else None)
                    if resumed
                    else status.phase,
                    "history": pruned(status.history, spec.history_limit, spec.regression.reference),
                }
            )
            if new != status:
                new = new.model_copy(update={"conditions": conditions(new, now, generation)})
                self._patch_status(body, new)
                if len(new.history) < len(status.history):  # historyLimit lowered: recorded, then pruned
                    self._prune(owner_of(body), keep={h.id for h in new.history})
            return None
        if trigger == Trigger.SCHEDULE and d is not None and d.missed:
            self._note(
                body,
                "Normal",
                "MissedSchedule",
                f"{d.missed} schedule times passed while no run could start; running once, for "
                f"{d.latest:%Y-%m-%d %H:%M} UTC",
            )
        owner = owner_of(body)
        rid = run_id(now, {h.id for h in status.history})
        record = RunRecord(
            id=rid,
            generation=generation,
            phase=Phase.RUNNING,
            trigger=trigger,
            scheduled_at=taken if trigger == Trigger.SCHEDULE else None,
            started_at=now,
        )
        snapshot = self._new_snapshot(spec, owner.namespace, rid, generation, now)
        variants = initial_statuses(snapshot.plan)
        new = status.model_copy(
            update={
                "phase": Phase.RUNNING,
                "observed_generation": generation,
                "measured_spec_hash": measured,
                "current_run": record,
                "variants": variants,
                "probes": initial_probe_statuses(snapshot.plan),
                "variant_names": ",".join(v.name for v in spec.variants),
                "last_run_time": now,
                "next_run_time": d.next if d is not None else None,
                "last_schedule_time": taken or status.last_schedule_time or (now if d else None),
            }
        )
        new = new.model_copy(update={"conditions": conditions(new, now, generation)})
        # Status first: a crash after this point resumes this run instead of starting another one.
        self._patch_status(body, new)
        if run_now:
            self._clear_run_now(body)
        # A new run id has no children yet: the first pass need not list them. Should the operator stop
        # before the run ConfigMap exists, the resumed run rebuilds it (see _snapshot).
        key = (owner.namespace, owner.name, rid)
        self._snapshots[key] = snapshot
        self._fresh.add(key)
        return new

    def _new_snapshot(
        self, spec: QuantBenchmarkSpec, namespace: str, rid: str, generation: int, now: datetime
    ) -> RunSnapshot:
        pools = pools_for_spec(self._nodes(), spec, GPU_PRODUCT_LABEL)
        facts = self._source_facts(namespace, spec)
        plan = plan_run(spec, pools, unavailable(spec, facts, self.settings.hub_access))
        return RunSnapshot(run_id=rid, generation=generation, started_at=now, spec=spec, plan=plan)

    def _nodes(self) -> list[Node]:
        """The cluster's Nodes as listed less than NODES_FRESH_S ago: reconciles of many benchmarks at once
        share one list call (one in flight at a time) instead of each listing every Node."""
        with self._node_lock:
            if self._node_list is None or time.monotonic() - self._node_list[0] >= NODES_FRESH_S:
                listed_at = time.monotonic()
                self._node_list = (listed_at, as_nodes(self.kube.list("Node")))
            return self._node_list[1]

    def _source_facts(self, namespace: str, spec: QuantBenchmarkSpec) -> SourceFacts:
        """The ConfigMaps and PersistentVolumeClaims the spec's sources name, as the API has them."""
        configmaps, claims = referenced(spec)
        return facts_from_objects(
            namespace,
            {name: self.kube.get("ConfigMap", namespace, name) for name in sorted(configmaps)},
            {name: self.kube.get("PersistentVolumeClaim", namespace, name) for name in sorted(claims)},
        )

    def _create_run_objects(self, owner: Owner, snapshot: RunSnapshot) -> Failure | None:
        """The run's spec snapshot (each Job's account is made with the Job); what the API refused, if any."""
        refused = self._create_checked(run_configmap(owner, snapshot))
        if refused is not None:
            return refused
        self._snapshots[(owner.namespace, owner.name, snapshot.run_id)] = snapshot
        self._run_objects_made.add((owner.namespace, owner.name, snapshot.run_id))
        return None

    def _create_role_binding(
        self, binding: dict[str, Any], attempts: int = 20, delay_s: float = 0.25
    ) -> Failure | None:
        """Create a RoleBinding after its Role. The apiserver checks a binding against the Role's rules as
        its RBAC cache sees them, and that cache can lag a just-created Role by a moment (HTTP 404 naming
        the Role): retry briefly rather than grant the operator `bind` on every Role."""
        for attempt in range(attempts):
            try:
                return self._create_checked(binding)
            except ApiError as exc:
                if exc.status != 404 or attempt == attempts - 1:
                    raise
                time.sleep(delay_s)
        return None

    def _create_checked(self, obj: dict[str, Any]) -> Failure | None:
        """Create ``obj``; a Failure when the API refuses it for good (400/403/422) or its name is held by an
        object this run did not make. Other errors (5xx, timeouts) raise: the reconcile is retried."""
        try:
            made = self.kube.create(obj)
        except ApiError as exc:
            if exc.status in REFUSED_STATUSES:
                return refusal(obj, exc.status, exc.body)
            raise
        if made:
            return None
        meta = obj["metadata"]
        existing = self.kube.get(obj["kind"], meta.get("namespace"), meta["name"])
        if existing is None or is_own(obj, existing):
            return None
        return name_taken(obj, existing)

    def _snapshot(self, body: dict[str, Any], status: QuantBenchmarkStatus) -> RunSnapshot | None:
        assert status.current_run is not None
        owner = owner_of(body)
        run = status.current_run
        key = (owner.namespace, owner.name, run.id)
        if key in self._snapshots:
            return self._snapshots[key]
        cm = self.kube.get("ConfigMap", owner.namespace, run_config_name(owner.name, run.id))
        if cm is not None:
            snapshot = snapshot_from_configmap(cm)
        elif (
            int(body["metadata"].get("generation") or 1) == run.generation
            and spec_problem(body, self.settings) is None
        ):
            # The operator stopped between recording the run and creating its objects: create them now.
            spec = QuantBenchmarkSpec.model_validate(body.get("spec") or {})
            snapshot = self._new_snapshot(spec, owner.namespace, run.id, run.generation, run.started_at)
            refused = self._create_run_objects(owner, snapshot)
            if refused is not None:
                self._refuse_run(body, status, snapshot, refused)
                return None
        else:
            self._note(body, "Warning", "RunLost", f"run {run.id}: its run ConfigMap is gone; ending the run")
            lost = [
                v.model_copy(update={"phase": VariantPhase.FAILED, "reason": "RunLost"})
                for v in status.variants
            ]
            self._finish(body, status, None, lost)
            return None
        self._snapshots[key] = snapshot
        return snapshot

    # ------------------------------------------------------------------------------------ reconcile
    def _observe(self, owner: Owner, rid: str) -> Observed:
        sel = selector({LABEL_BENCHMARK: labels(owner.name)[LABEL_BENCHMARK], LABEL_RUN: rid})
        ns = owner.namespace
        # One round trip for the lists that need no order; ConfigMaps only after Jobs (see
        # reconcile.Observed).
        others = {kind: self._lists.submit(self.kube.list, kind, ns, sel) for kind in OBSERVED_KINDS}
        jobs = as_jobs(self.kube.list("Job", ns, sel))
        configmaps = as_configmaps(self.kube.list("ConfigMap", ns, sel))
        obs = Observed(
            now=self.clock(),
            jobs={name_of(j): j for j in jobs},
            configmaps={name_of(c): c for c in configmaps},
            deployments={name_of(d): d for d in as_deployments(others["Deployment"].result())},
            services={s["metadata"]["name"] for s in others["Service"].result()},
            pods=as_pods(others["Pod"].result()),
        )
        obs.pod_create_errors = self._pod_create_errors(ns, obs)
        return obs

    def _pod_create_errors(self, namespace: str, obs: Observed) -> dict[str, str]:
        """Why Jobs that have had no pod for a while cannot create one (their FailedCreate Events): one
        list call, made only when such a Job exists."""
        with_pods = {labels_of(p).get("batch.kubernetes.io/job-name") for p in obs.pods}
        podless = set()
        for name, job in obs.jobs.items():
            created = parse_time(created_at(job))
            age = (obs.now - created).total_seconds() if created else 0.0
            if name not in with_pods and job_finished(job) is None and age > POD_CREATE_GRACE_S:
                podless.add(name)
            elif name not in with_pods and job_finished(job) == "Failed":
                podless.add(name)  # a Job that timed out waiting for its pod: say why
        if not podless:
            return {}
        events = self.kube.list(
            "Event", namespace, field_selector="involvedObject.kind=Job,reason=FailedCreate"
        )
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        out: dict[str, str] = {}
        for event in events:
            involved = str((event.get("involvedObject") or {}).get("name") or "")
            if involved in podless:
                out[involved] = str(event.get("message") or "")
        return out

    def _pass(
        self,
        body: dict[str, Any],
        ctx: RunContext,
        variants: list[VariantStatus],
        probes: list[ProbeStatus],
        fresh: bool = False,
    ) -> Decision:
        obs = Observed(now=self.clock()) if fresh else self._observe(ctx.owner, ctx.run_id)
        obs.node_products = self._products_for(obs)
        obs.node_drivers = {n: d for n, d in self._node_drivers.items() if d}
        decision = decide(ctx, variants, obs, probes)
        if decision.needs_pools:
            obs.pools = pools_for_spec(self._nodes(), ctx.spec, GPU_PRODUCT_LABEL)
            decision = decide(ctx, variants, obs, probes)
        ns = ctx.owner.namespace
        refused = self._apply_creates(decision, obs)
        if refused:
            # Decide again knowing what was refused: its variant (or probe) fails with the API's message
            # and releases what it holds; the others go on (what the first decision made, it announced).
            first_notes = decision.notes
            obs.rejected = refused
            decision = decide(ctx, variants, obs, probes)
            decision.notes = [
                n for n in first_notes if n.type == "Normal" and n not in decision.notes
            ] + decision.notes
            more = self._apply_creates(decision, obs)
            if more:
                obs.rejected = {**refused, **more}
                decision = decide(ctx, variants, obs, probes)
        for note in decision.notes:
            self._note(body, note.type, note.reason, note.message)
        if decision.weights_from:
            decision.variants = [
                self._with_weights(ns, v, decision.weights_from.get(v.name)) for v in decision.variants
            ]
        return decision

    def _apply_creates(self, decision: Decision, observed: Observed | None = None) -> dict[str, Failure]:
        """Create the decision's objects, Jobs last (their ConfigMaps and the server they call exist
        first); what the API refused, by object name. A refused object is added to nothing observed, the
        ones made are (so a second decision sees them)."""
        creates = [a.obj for a in decision.actions if isinstance(a, Create)]
        refused: dict[str, Failure] = {}
        refused_variants: set[str] = set()
        made: list[dict[str, Any]] = []
        last = ("RoleBinding", "Job")
        waves = [[o for o in creates if o["kind"] not in last]] + [
            [o for o in creates if o["kind"] == kind] for kind in last
        ]
        for wave in waves:
            wave = [
                o
                for o in wave
                if (o["metadata"].get("labels") or {}).get(LABEL_VARIANT) not in refused_variants
                and o["metadata"]["name"] not in refused
            ]
            create = self._create_role_binding if wave and wave[0]["kind"] == "RoleBinding" else None
            results = self._fanout.map(create or self._create_checked, wave)
            for obj, failure in zip(wave, results, strict=True):
                if failure is None:
                    made.append(obj)
                    continue
                refused[obj["metadata"]["name"]] = failure
                variant = (obj["metadata"].get("labels") or {}).get(LABEL_VARIANT)
                if variant is not None:
                    refused_variants.add(variant)
        if refused and observed is not None:
            # A second decision must see what exists now: creating it again would be refused, not a 409,
            # where a quota is full (admission runs before the name check).
            for obj in made:
                name = obj["metadata"]["name"]
                if obj["kind"] == "Deployment":
                    observed.deployments[name] = cast(Deployment, obj)
                elif obj["kind"] == "Service":
                    observed.services.add(name)
                elif obj["kind"] == "Job":
                    observed.jobs[name] = cast(Job, obj)
                elif obj["kind"] == "ConfigMap":
                    observed.configmaps[name] = cast(ConfigMap, obj)
        return refused

    def _products_for(self, obs: Observed) -> dict[str, str]:
        for pod in obs.pods:
            node = node_of(pod)
            if node and node not in self._node_products:
                obj = self.kube.get("Node", None, node)
                node_labels = labels_of(as_nodes([obj])[0]) if obj is not None else {}
                self._node_products[node] = node_labels.get(GPU_PRODUCT_LABEL, "")
                self._node_drivers[node] = gpu_driver(node_labels) or ""
        return dict(self._node_products)

    def _with_weights(self, namespace: str, v: VariantStatus, pod: str | None) -> VariantStatus:
        if not pod or v.weights_gib is not None or f"{namespace}/{pod}" in self._logs_read:
            return v
        self._logs_read.add(f"{namespace}/{pod}")
        text = self.kube.pod_log(namespace, pod)
        weights = weights_gib_from_log(text) if text else None
        return v.model_copy(update={"weights_gib": weights}) if weights is not None else v

    # ------------------------------------------------------------------------------------ finish
    def _finish(
        self,
        body: dict[str, Any],
        status: QuantBenchmarkStatus,
        snapshot: RunSnapshot | None,
        variants: list[VariantStatus],
    ) -> None:
        assert status.current_run is not None
        owner = owner_of(body)
        now = self.clock()
        phase = run_phase(variants)
        summary = None
        if snapshot is not None:
            results = self._results(owner, snapshot, variants, now)
            summary = self._summary(body, results)
        provenance = self._provenance(snapshot, variants, results) if snapshot is not None else None
        record = status.current_run.model_copy(
            update={"phase": phase, "finished_at": now, "provenance": provenance}
        )
        spec = snapshot.spec if snapshot is not None else None
        pinned = spec.regression.reference if spec is not None else self._pinned(body)
        reference = regression.reference_run(status.history, pinned)
        before = self._reference_summary(body, reference) if reference is not None else None
        if before is None:
            reference = None  # its summary is gone: nothing to compare with
        found: list[Regression] = []
        if reference is not None and before is not None and summary is not None and spec is not None:
            found = regression.with_changes(
                worst_regressions(
                    regression.compare(before, summary, spec.regression.tolerances, reference.id)
                ),
                reference.provenance,
                provenance,
            )
        kept_in = self._store_summary(body, record.id, summary) if summary is not None else None
        record = compact_record(record, summary, kept_in)
        record = record.model_copy(
            update={"regressions": found, "reference_run": reference.id if reference is not None else None}
        )
        limit = spec.history_limit if spec is not None else 10
        history = compact_history(with_history(status.history, record, limit, pinned), pinned)
        new = status.model_copy(
            update={
                "phase": phase,
                "current_run": None,
                "variants": variants,
                "history": history,
                "summary": bounded_summary(summary, kept_in),
                "best": summary.best if summary else None,
                "regressions": found,
            }
        )
        generation = int(body["metadata"].get("generation") or 1)
        new = new.model_copy(update={"conditions": conditions(new, now, generation)})
        # Record first, then tear down: should the operator stop in between, the recorded run is not
        # resumed, and the next start sweeps what it still holds (_sweep).
        self._patch_status(body, new)
        self._cleanup_run(owner, record.id, keep={h.id for h in history})
        self._forget_run(owner, record.id)
        type_ = "Normal" if phase == Phase.SUCCEEDED else "Warning"
        best = f"; best: {new.best}" if new.best else ""
        self._note(body, type_, f"Run{phase}", f"run {record.id} {phase}{best}")
        if found:
            self._note(body, "Warning", "Regressed", regression.condition_message(found, record.id, 1000))
        elif status.regressions and reference is not None:
            self._note(
                body,
                "Normal",
                "RegressionCleared",
                f"run {record.id}: no figure regressed against {reference.id}",
            )

    def _provenance(
        self, snapshot: RunSnapshot, variants: list[VariantStatus], results: RunResults
    ) -> RunProvenance:
        """What each variant ran on: image (spec) and digest (pod status), vLLM version (reported by the
        server to the load generator), model and revision (spec), GPU and driver (node labels)."""
        spec = snapshot.spec
        by_name = {v.name: v for v in variants}
        out = []
        for vp in snapshot.plan.variants:
            variant = spec.variant(vp.variant)
            v = by_name.get(vp.variant)
            vllm = None
            if vp.variant in results.variants:
                versions = [
                    r.server_version
                    for r in results.variants[vp.variant].loadgen.values()
                    if r.server_version
                ]
                vllm = versions[0] if versions else None
            out.append(
                VariantProvenance(
                    variant=vp.variant,
                    image=server_image(spec, variant, self.settings.cpu_server_image),
                    image_digest=v.image_digest if v else None,
                    vllm_version=vllm,
                    model=model_of(spec, variant),
                    revision=revision_of(spec, variant),
                    gpu=v.gpu if v else None,
                    gpu_driver=(v.gpu_driver or self._driver_of(v.node)) if v else None,
                    node=v.node if v else None,
                )
            )
        return RunProvenance(
            generation=snapshot.generation, quantbench_version=QUANTBENCH_VERSION, variants=out
        )

    def _driver_of(self, node: str | None) -> str | None:
        if not node:
            return None
        if node not in self._node_drivers:
            obj = self.kube.get("Node", None, node)
            node_labels = labels_of(as_nodes([obj])[0]) if obj is not None else {}
            self._node_drivers[node] = gpu_driver(node_labels) or ""
        return self._node_drivers[node] or None

    def _reference_summary(self, body: dict[str, Any], reference: RunRecord) -> RunSummary | None:
        """The reference run's full summary: embedded in its history entry (entries written before compact
        history) or read from its summary ConfigMap; None when neither is there any more."""
        if reference.summary is not None:
            return reference.summary
        if reference.summary_config_map is None:
            return None
        meta = body["metadata"]
        cm = self.kube.get("ConfigMap", meta["namespace"], reference.summary_config_map)
        data = ((cm or {}).get("binaryData") or {}).get(SUMMARY_KEY)
        if data is not None:
            try:
                return decode_summary(data)
            except (OSError, ValueError) as exc:
                log.warning("unreadable summary %s: %s", reference.summary_config_map, exc)
        self._note(
            body,
            "Warning",
            "ReferenceUnavailable",
            f"run {reference.id}: its summary (ConfigMap {reference.summary_config_map}) cannot be read; "
            "no regressions are computed against it",
        )
        return None

    def _store_summary(self, body: dict[str, Any], rid: str, summary: Any) -> str | None:
        """Keep the run's full summary in its ConfigMap; its name, or None when it cannot be kept."""
        owner = owner_of(body)
        obj = summary_config_map(owner, rid, int(body["metadata"].get("generation") or 1), summary)
        if obj is None:
            self._note(body, "Warning", "SummaryTooLarge", f"run {rid}: the full summary exceeds a ConfigMap")
            return None
        refused = self._create_checked(obj)
        if refused is not None:
            self._note(body, "Warning", str(refused.reason), f"run {rid}: {refused.message}")
            return None
        return str(obj["metadata"]["name"])

    def _results(
        self, owner: Owner, snapshot: RunSnapshot, variants: list[VariantStatus], now: datetime
    ) -> RunResults:
        sel = selector({LABEL_BENCHMARK: labels(owner.name)[LABEL_BENCHMARK], LABEL_RUN: snapshot.run_id})
        cms = {name_of(c): c for c in as_configmaps(self.kube.list("ConfigMap", owner.namespace, sel))}
        results = run_results(owner.name, snapshot, variants, cms, now)
        if self.settings.results_dir:
            results.write(Path(self.settings.results_dir) / owner.namespace / owner.name / snapshot.run_id)
        return results

    def _summary(self, body: dict[str, Any], results: RunResults) -> RunSummary | None:
        try:
            return build_summary(results, SummarySettings(prices=self.settings.gpu_hour_prices))
        except Exception as exc:  # a summary bug must not wedge the run: record it and go on
            log.exception("summary of %s failed", body["metadata"]["name"])
            self._note(body, "Warning", "SummaryFailed", f"the run's summary could not be computed: {exc}")
            return None

    def _cleanup_run(self, owner: Owner, rid: str, keep: set[str]) -> None:
        """Release what a finished run still holds (servers, Jobs, RBAC); drop what runs that fell out of
        the history kept (see _prune)."""
        ns = owner.namespace
        for kind in ("Deployment", "Service", "Job", "RoleBinding", "Role", "ServiceAccount"):
            for obj in self.kube.list(kind, ns, selector({**labels(owner.name, rid)})):
                self.kube.delete(kind, ns, obj["metadata"]["name"])
        self._prune(owner, keep | {rid})

    def _prune(self, owner: Owner, keep: set[str]) -> None:
        """Delete the ConfigMaps (results, run snapshot, full summary) and stored results of every run not in
        ``keep`` (the runs the history holds, a pinned reference among them)."""
        ns = owner.namespace
        bench_sel = selector({LABEL_BENCHMARK: labels(owner.name)[LABEL_BENCHMARK]})
        for cm in self.kube.list("ConfigMap", ns, bench_sel):
            run = (cm["metadata"].get("labels") or {}).get(LABEL_RUN)
            if run is not None and run not in keep:
                self.kube.delete("ConfigMap", ns, cm["metadata"]["name"])
        if self.settings.results_dir:
            stored = Path(self.settings.results_dir) / ns / owner.name
            for folder in stored.iterdir() if stored.is_dir() else []:
                if folder.is_dir() and folder.name not in keep:
                    shutil.rmtree(folder, ignore_errors=True)

    def delete_all(self, namespace: str, name: str) -> int:
        """Delete every child of the benchmark (finalizer): servers first so GPUs are freed at once."""
        sel = selector({LABEL_BENCHMARK: labels(name)[LABEL_BENCHMARK]})
        deleted = 0
        for kind in CHILD_KINDS:
            for obj in self.kube.list(kind, namespace, sel):
                deleted += int(self.kube.delete(kind, namespace, obj["metadata"]["name"]))
        for key in [k for k in self._snapshots if k[0] == namespace and k[1] == name]:
            self._snapshots.pop(key, None)
        return deleted


_STATUS_KEYS = {info.alias or n for n, info in QuantBenchmarkStatus.model_fields.items()}
