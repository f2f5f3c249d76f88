"""The streaming client against the scripted server: timings match the script, failures are classified."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from quantbench_loadgen.client import Endpoint, StreamingClient, api_base, request_body
from quantbench_loadgen.results import FailureReason
from quantbench_loadgen.stats import RequestTiming, to_record
from tests.loadgen.conftest import ScriptedFactory, closed_port


async def _send(
    url: str, model: str = "scripted", *, n: int = 8, endpoint: str = "completions", **kw: object
) -> RequestTiming:
    ep: Endpoint = "chat" if endpoint == "chat" else "completions"
    async with StreamingClient(url, endpoint=ep, **kw) as client:  # type: ignore[arg-type]
        body = request_body(endpoint=ep, model=model, prompt="time year day", max_tokens=n, ignore_eos=True)
        return await client.send(body, RequestTiming(), request_id="req-1")


def test_api_base() -> None:
    assert api_base("http://h:8000") == "http://h:8000/v1"
    assert api_base("http://h:8000/v1/") == "http://h:8000/v1"
    with pytest.raises(ValueError, match="http://"):
        api_base("h:8000")


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_timings_follow_the_script(scripted_server: ScriptedFactory, endpoint: str) -> None:
    url = scripted_server(ttft_ms=30, itl_ms=10, record=True)
    t = asyncio.run(_send(url, n=6, endpoint=endpoint, keep_text=True))
    assert t.error is None, t.error_detail
    r = to_record(t, index=0, group="g", origin=t.send)
    assert (r.prompt_tokens, r.output_tokens) == (3, 6)  # from the usage chunk
    assert len(r.chunk_times_s) == 6 and r.generated_text == " tok" * 6
    # The server never writes early (it may write late on a busy machine: its lateness is not ours).
    assert r.ttft_ms is not None and r.ttft_ms >= 30.0
    assert r.e2e_ms is not None and r.e2e_ms >= 30.0 + 5 * 10.0
    # Each chunk is time-stamped shortly after the server wrote it (the server's clock is the same
    # monotonic clock: one machine).
    with urllib.request.urlopen(url + "/scripted/log") as resp:
        writes = json.loads(resp.read())["req-1"][1:]
    lags_ms = [(arrived - written) * 1000.0 for arrived, written in zip(t.chunk_times, writes, strict=True)]
    assert all(0.0 <= lag < 20.0 for lag in lags_ms), lags_ms


@pytest.mark.parametrize(
    ("model", "reason", "detail"),
    [
        ("fault-http500", FailureReason.HTTP_STATUS, "HTTP 500: "),
        ("fault-malformed", FailureReason.MALFORMED, "JSONDecodeError"),
        ("fault-disconnect", FailureReason.DISCONNECT, ""),
        ("fault-nousage", FailureReason.MALFORMED, "include_usage"),
        ("fault-error", FailureReason.SERVER_ERROR, "scripted error"),
    ],
)
def test_faults_are_classified(
    scripted_server: ScriptedFactory, model: str, reason: FailureReason, detail: str
) -> None:
    t = asyncio.run(_send(scripted_server(itl_ms=1), model, n=8))
    assert t.error == reason, t.error_detail
    assert detail in (t.error_detail or "")
    assert t.end >= t.send


def test_disconnect_keeps_what_was_measured(scripted_server: ScriptedFactory) -> None:
    t = asyncio.run(_send(scripted_server(itl_ms=1), "fault-disconnect", n=8))
    assert t.error == FailureReason.DISCONNECT and len(t.chunk_times) == 4


def test_timeout(scripted_server: ScriptedFactory) -> None:
    t = asyncio.run(_send(scripted_server(), "fault-hang", timeout_s=0.3))
    assert t.error == FailureReason.TIMEOUT
    assert 0.25 < t.end - t.send < 5


def test_unreachable_server() -> None:
    t = asyncio.run(_send(closed_port()))
    assert t.error == FailureReason.CONNECT and "Cannot connect" in (t.error_detail or "")


def test_cancelled_request_is_marked(scripted_server: ScriptedFactory) -> None:
    async def main(url: str) -> RequestTiming:
        timing = RequestTiming()
        async with StreamingClient(url) as client:
            body = request_body(
                endpoint="completions", model="fault-hang", prompt="x", max_tokens=1, ignore_eos=False
            )
            task = asyncio.create_task(client.send(body, timing))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return timing

    t = asyncio.run(main(scripted_server()))
    assert t.error == FailureReason.CANCELLED
