"""kopf handlers: thin wiring from resource events to `quantbench.driver.Driver`.

- one task per QuantBenchmark drives its runs: it reconciles when woken (the spec or one of its children
  changed) and every `resync_seconds` otherwise; no finalizer is needed (children are owned), so an
  uninstalled operator never leaves a QuantBenchmark or its namespace undeletable;
- create/update/resume handlers record an Event and wake the task; the update handler states the policy
  for spec changes during a run;
- deleting a benchmark deletes its children through the garbage collector (ownerReferences);
- event handlers on the children (pods, Jobs, ConfigMaps, Deployments) only wake the owner's task;
- reconciles run in threads: benchmarks with a run in flight in one pool, the others (a run about to start)
  in their own, so that starting a run never queues behind the passes of runs in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import kopf

from quantbench import metrics
from quantbench.api.v1alpha1 import GROUP, PLURAL, VERSION
from quantbench.driver import RUN_NOW_ANNOTATION, Driver, StatusConflict
from quantbench.kube import Kube, load_api_client
from quantbench.leader import LeaderElector
from quantbench.measured import changes_measurement
from quantbench.naming import GROUP as LABEL_GROUP
from quantbench.naming import LABEL_BENCHMARK, LABEL_MANAGED_BY, MANAGED_BY
from quantbench.settings import OperatorSettings

log = logging.getLogger(__name__)
FINALIZER = f"{LABEL_GROUP}/finalizer"
DEBOUNCE_S = 0.05
ERROR_BACKOFF_S = 5.0
ERROR_BACKOFF_MAX_S = 300.0
LEADER_POLL_S = 1.0
CONFLICT_RETRY_S = 0.2
OWNED = {LABEL_MANAGED_BY: MANAGED_BY}


class Runtime:
    """Process-wide state: the driver, the thread pool it runs in, and one wake-up event per benchmark."""

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.settings = OperatorSettings()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="reconcile")
        # Benchmarks with no run in progress (a run about to start among them) reconcile in a lane of their
        # own: starting a run never queues behind the passes of the runs already in flight.
        self.start_executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="start")
        self.running: set[tuple[str, str]] = set()  # benchmarks whose last seen status has a current run
        self.wakers: dict[tuple[str, str], asyncio.Event] = {}
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.elector: LeaderElector | None = None
        self.stats: asyncio.Task[None] | None = None
        self.generations: dict[tuple[str, str], Any] = {}
        self.metrics_served = False

    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def lane(self, key: tuple[str, str]) -> concurrent.futures.ThreadPoolExecutor:
        """The thread pool a benchmark's reconcile runs in: runs in flight in one, the others in their own."""
        return self.executor if key in self.running else self.start_executor

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name:
            event = self.wakers.get((namespace, name))
            if event is not None:
                event.set()


RUNTIME = Runtime()


async def _log_stats(every_s: float) -> None:
    """Every ``every_s``: reconcile passes and API requests so far (settings.stats_seconds; benchmarks)."""
    while True:
        await asyncio.sleep(every_s)
        driver = RUNTIME.driver
        if driver is not None:
            log.warning(
                "operator stats: reconciles=%d api_requests=%d benchmarks=%d reconcile_s=%.3f api_s=%.3f",
                driver.reconciles,
                driver.kube.requests,
                len(RUNTIME.tasks),
                driver.reconcile_seconds,
                driver.kube.request_seconds,
            )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=LABEL_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=LABEL_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 8
    # Children are watched through a server-side label selector: the operator never receives (nor keeps)
    # the cluster's other pods, Jobs, ConfigMaps and Deployments.
    owned = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    for key in (("v1", "pods"), ("batch", "v1", "jobs"), ("v1", "configmaps"), ("apps", "v1", "deployments")):
        settings.watching.label_selectors[key] = owned
    RUNTIME.settings = OperatorSettings.from_env()
    if RUNTIME.settings.metrics_port is not None and not RUNTIME.metrics_served:
        metrics.serve(RUNTIME.settings.metrics_port, RUNTIME.settings.metrics_address)
        RUNTIME.metrics_served = True
    if RUNTIME.driver is None:
        RUNTIME.driver = Driver(Kube(load_api_client()), RUNTIME.settings)
    if RUNTIME.settings.stats_seconds is not None and RUNTIME.stats is None:
        RUNTIME.stats = asyncio.get_running_loop().create_task(_log_stats(RUNTIME.settings.stats_seconds))
    if RUNTIME.settings.leader_election and RUNTIME.elector is None:
        duration = RUNTIME.settings.lease_duration_seconds
        RUNTIME.elector = LeaderElector(
            RUNTIME.driver.kube, RUNTIME.settings.lease_namespace, duration_s=duration, renew_s=duration / 3
        ).start()


def _driver() -> Driver:
    if RUNTIME.driver is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return RUNTIME.driver


@kopf.on.create(GROUP, VERSION, PLURAL)
async def created(name: str, namespace: str | None, **_: Any) -> None:
    RUNTIME.wake(namespace, name)


@kopf.on.resume(GROUP, VERSION, PLURAL)
async def resumed(name: str, namespace: str | None, **_: Any) -> None:
    RUNTIME.wake(namespace, name)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(body: kopf.Body, old: Any, new: Any, name: str, namespace: str | None, **_: Any) -> None:
    status = body.get("status") or {}
    run = status.get("currentRun")
    generation = body.get("metadata", {}).get("generation")
    # With field="spec", kopf passes the old and new specs themselves.
    if not changes_measurement(dict(old or {}), dict(new or {})):
        message = (
            f"spec changed to generation {generation} in historyLimit, schedule, suspend, timeouts or "
            "regression only: nothing measured changed, no run starts for it"
        )
    elif run:
        message = (
            f"spec changed to generation {generation} during run {run.get('id')}: that run finishes with "
            f"generation {run.get('generation')}, then a run of generation {generation} starts"
        )
    else:
        message = f"spec changed to generation {generation}: a new run starts"
    if RUNTIME.leading():
        _driver().kube.event(dict(body), "Normal", "SpecChanged", message)
    RUNTIME.wake(namespace, name)


@kopf.on.update(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RUN_NOW_ANNOTATION))
async def run_now_changed(name: str, namespace: str | None, **_: Any) -> None:
    """The run-now annotation was set (or removed): the benchmark's task takes it at once, not at the next
    resync."""
    RUNTIME.wake(namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def deleted(name: str, namespace: str | None, **_: Any) -> None:
    """Optional (no finalizer): should another finalizer hold a deleted benchmark, release its GPUs at once.
    Otherwise the children go with their owner through the garbage collector (ownerReferences)."""
    assert namespace is not None  # QuantBenchmark is namespaced
    loop = asyncio.get_running_loop()
    count = await loop.run_in_executor(RUNTIME.executor, _driver().delete_all, namespace, name)
    log.info("deleted %d children of %s/%s", count, namespace, name)
    RUNTIME.wakers.pop((namespace, name), None)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def track(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    """One driving task per benchmark, started when the benchmark is first seen and stopped when it is gone.

    Not a kopf daemon: kopf puts a finalizer on every object with a daemon, and a finalizer that no
    operator removes (the operator uninstalled, or its namespace deleted first) leaves the QuantBenchmarks
    and their namespaces undeletable. The children are owned (ownerReferences), so the garbage collector
    releases their GPUs when a benchmark is deleted."""
    if not namespace:
        return
    key = (namespace, name)
    meta = body.get("metadata") or {}
    gone = event.get("type") == "DELETED" or bool(meta.get("deletionTimestamp"))
    task = RUNTIME.tasks.get(key)
    if gone:
        if task is not None:
            task.cancel()
        RUNTIME.tasks.pop(key, None)
        RUNTIME.wakers.pop(key, None)
        RUNTIME.generations.pop(key, None)
        RUNTIME.running.discard(key)
        return
    if (body.get("status") or {}).get("currentRun"):
        RUNTIME.running.add(key)
    else:
        RUNTIME.running.discard(key)
    generation = meta.get("generation")
    if task is None or task.done():
        RUNTIME.wakers.setdefault(key, asyncio.Event())
        RUNTIME.tasks[key] = asyncio.get_running_loop().create_task(drive(dict(body), name, namespace))
    elif RUNTIME.generations.get(key) != generation:
        RUNTIME.wake(namespace, name)  # a spec edit; its own status writes do not wake it
    RUNTIME.generations[key] = generation


@kopf.on.cleanup()
async def stop_tasks(**_: Any) -> None:
    if RUNTIME.elector is not None:
        await asyncio.get_running_loop().run_in_executor(None, RUNTIME.elector.stop)
    tasks = list(RUNTIME.tasks.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    RUNTIME.tasks.clear()
    RUNTIME.running.clear()


async def drive(body: dict[str, Any], name: str, namespace: str) -> None:
    """Reconcile the benchmark whenever it or a child changes, and every resync period, until cancelled. A
    reconcile that fails is retried with exponential backoff; the first failure of a streak is recorded as
    an Event."""
    key = (namespace, name)
    wake = RUNTIME.wakers.setdefault(key, asyncio.Event())
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        wake.clear()
        delay: float | None
        backoff = 0.0
        if not RUNTIME.leading():  # another operator holds the Lease: it acts; this one waits its turn
            await asyncio.sleep(LEADER_POLL_S)
            continue
        try:
            with metrics.Timer(metrics.OPERATOR):
                delay = await loop.run_in_executor(RUNTIME.lane(key), _driver().reconcile, namespace, name)
            failures = 0
        except StatusConflict as exc:
            log.info("reconcile of %s/%s: %s; again", namespace, name, exc)
            delay = CONFLICT_RETRY_S
        except Exception as exc:
            delay = backoff = error_backoff(failures)
            failures += 1
            log.exception("reconcile of %s/%s failed; retrying in %.0f s", namespace, name, backoff)
            if failures == 1 and RUNTIME.driver is not None:
                message = f"reconcile failed, retrying with backoff: {str(exc)[:600]}"
                await loop.run_in_executor(
                    RUNTIME.executor, RUNTIME.driver.kube.event, body, "Warning", "ReconcileError", message
                )
        if failures:
            await asyncio.sleep(backoff)  # back off even when woken: child events must not make a hot loop
            continue
        timeout = (
            RUNTIME.settings.resync_seconds if delay is None else min(delay, RUNTIME.settings.resync_seconds)
        )
        try:
            await asyncio.wait_for(wake.wait(), timeout=timeout)
        except TimeoutError:
            continue
        await asyncio.sleep(DEBOUNCE_S)  # let a burst of child events settle into one reconcile


def error_backoff(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed reconciles in a row (5 s doubling, 5 min cap)."""
    return float(min(ERROR_BACKOFF_MAX_S, ERROR_BACKOFF_S * 2 ** min(failures, 16)))


async def _wake_owner(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
    RUNTIME.wake(namespace, labels.get(LABEL_BENCHMARK))


kopf.on.event("v1", "pods", labels=OWNED)(_wake_owner)
kopf.on.event("batch", "v1", "jobs", labels=OWNED)(_wake_owner)
kopf.on.event("v1", "configmaps", labels=OWNED)(_wake_owner)
kopf.on.event("apps", "v1", "deployments", labels=OWNED)(_wake_owner)


@kopf.on.event(GROUP, VERSION, PLURAL)
def export_state(event: kopf.RawEvent, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    """Mirror each benchmark's summary and run state (from its status, so a restart loses nothing) into
    /metrics; a deleted benchmark's series disappear."""
    if not namespace:
        return
    if event.get("type") == "DELETED":
        metrics.BENCHMARKS.forget(namespace, name)
        return
    try:
        samples = metrics.samples_of_body(dict(body))
    except ValueError as exc:
        log.warning("status of %s/%s is not a QuantBenchmarkStatus, not exported: %s", namespace, name, exc)
        return
    metrics.BENCHMARKS.update(namespace, name, samples)
