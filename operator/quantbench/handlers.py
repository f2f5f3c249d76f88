"""kopf handlers: thin wiring from resource events to `quantbench.driver.Driver`.

- one daemon per QuantBenchmark drives its runs: it reconciles when woken (the resource or one of its
  children changed) and every `resync_seconds` otherwise;
- create/update/resume handlers record an Event and wake the daemon; the update handler states the policy
  for spec changes during a run;
- the delete handler (behind the operator's finalizer) deletes every child so GPUs are released at once;
- event handlers on the children (pods, Jobs, ConfigMaps, Deployments) only wake the owner's daemon.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import kopf

from quantbench import metrics
from quantbench.api.v1alpha1 import GROUP, PLURAL, VERSION
from quantbench.driver import RUN_NOW_ANNOTATION, Driver
from quantbench.kube import Kube, load_api_client
from quantbench.naming import GROUP as LABEL_GROUP
from quantbench.naming import LABEL_BENCHMARK, LABEL_MANAGED_BY, MANAGED_BY
from quantbench.settings import OperatorSettings

log = logging.getLogger(__name__)
FINALIZER = f"{LABEL_GROUP}/finalizer"
DEBOUNCE_S = 0.05
ERROR_BACKOFF_S = 5.0
OWNED = {LABEL_MANAGED_BY: MANAGED_BY}


class Runtime:
    """Process-wide state: the driver, the thread pool it runs in, and one wake-up event per benchmark."""

    def __init__(self) -> None:
        self.driver: Driver | None = None
        self.settings = OperatorSettings()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="reconcile")
        self.wakers: dict[tuple[str, str], asyncio.Event] = {}
        self.metrics_served = False

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name:
            event = self.wakers.get((namespace, name))
            if event is not None:
                event.set()


RUNTIME = Runtime()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=LABEL_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=LABEL_GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 8
    RUNTIME.settings = OperatorSettings.from_env()
    if RUNTIME.settings.metrics_port is not None and not RUNTIME.metrics_served:
        metrics.serve(RUNTIME.settings.metrics_port)
        RUNTIME.metrics_served = True
    if RUNTIME.driver is None:
        RUNTIME.driver = Driver(Kube(load_api_client()), RUNTIME.settings)


def _driver() -> Driver:
    if RUNTIME.driver is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return RUNTIME.driver


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(name: str, namespace: str | None, **_: Any) -> None:
    RUNTIME.wake(namespace, name)


@kopf.on.resume(GROUP, VERSION, PLURAL)
def resumed(name: str, namespace: str | None, **_: Any) -> None:
    RUNTIME.wake(namespace, name)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    status = body.get("status") or {}
    run = status.get("currentRun")
    generation = body.get("metadata", {}).get("generation")
    if run:
        message = (
            f"spec changed to generation {generation} during run {run.get('id')}: that run finishes with "
            f"generation {run.get('generation')}, then a run of generation {generation} starts"
        )
    else:
        message = f"spec changed to generation {generation}: a new run starts"
    _driver().kube.event(dict(body), "Normal", "SpecChanged", message)
    RUNTIME.wake(namespace, name)


@kopf.on.update(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RUN_NOW_ANNOTATION))
def run_now_changed(name: str, namespace: str | None, **_: Any) -> None:
    """The run-now annotation was set (or removed): the daemon takes it at once, not at the next resync."""
    RUNTIME.wake(namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(name: str, namespace: str | None, **_: Any) -> None:
    assert namespace is not None  # QuantBenchmark is namespaced
    loop = asyncio.get_running_loop()
    count = await loop.run_in_executor(RUNTIME.executor, _driver().delete_all, namespace, name)
    log.info("deleted %d children of %s/%s", count, namespace, name)
    RUNTIME.wakers.pop((namespace, name), None)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def drive(stopped: kopf.DaemonStopped, name: str, namespace: str | None, **_: Any) -> None:
    """Reconcile the benchmark whenever it or a child changes, and every resync period."""
    assert namespace is not None  # QuantBenchmark is namespaced
    key = (namespace, name)
    wake = RUNTIME.wakers.setdefault(key, asyncio.Event())
    loop = asyncio.get_running_loop()
    while not stopped:
        wake.clear()
        delay: float | None
        try:
            with metrics.Timer(metrics.OPERATOR):
                delay = await loop.run_in_executor(RUNTIME.executor, _driver().reconcile, namespace, name)
        except Exception:
            log.exception("reconcile of %s/%s failed; retrying in %.0f s", namespace, name, ERROR_BACKOFF_S)
            delay = ERROR_BACKOFF_S
        timeout = (
            RUNTIME.settings.resync_seconds if delay is None else min(delay, RUNTIME.settings.resync_seconds)
        )
        woken = asyncio.ensure_future(wake.wait())
        stopping = asyncio.ensure_future(stopped.wait())
        await asyncio.wait({woken, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (woken, stopping):
            waiter.cancel()
        if woken.done() and not woken.cancelled():
            await asyncio.sleep(DEBOUNCE_S)  # let a burst of child events settle into one reconcile
    RUNTIME.wakers.pop(key, None)


def _wake_owner(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
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
