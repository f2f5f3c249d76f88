"""The handlers' wiring: which thread pool a reconcile runs in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from quantbench import handlers
from quantbench.handlers import RUNTIME, Runtime

# The function kopf registered (its decorator types it as kopf's own callback protocol).
track = cast(Callable[..., Awaitable[None]], handlers.track)


def test_a_benchmark_without_a_run_in_flight_reconciles_in_its_own_pool() -> None:
    runtime = Runtime()
    key = ("ns", "b")
    assert runtime.lane(key) is runtime.start_executor
    runtime.running.add(key)
    assert runtime.lane(key) is runtime.executor
    assert runtime.start_executor is not runtime.executor


def test_the_pool_follows_the_status_the_operator_last_saw() -> None:
    def body(status: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": "b", "namespace": "ns", "generation": 1}, "status": status}

    async def seen(status: dict[str, Any], type_: str = "MODIFIED") -> bool:
        await track(event={"type": type_}, body=body(status), name="b", namespace="ns")
        return ("ns", "b") in RUNTIME.running

    async def scenario() -> list[bool]:
        try:
            return [
                await seen({}),
                await seen({"currentRun": {"id": "r1"}}),
                await seen({"phase": "Succeeded"}),
                await seen({"currentRun": {"id": "r2"}}),
                await seen({"currentRun": {"id": "r2"}}, "DELETED"),
            ]
        finally:
            for task in RUNTIME.tasks.values():
                task.cancel()
            RUNTIME.tasks.clear()

    assert asyncio.run(scenario()) == [False, True, False, True, False]
