"""Streaming client for OpenAI-compatible completions and chat endpoints (aiohttp).

One `send` is one streamed request. Every chunk that carries generated text is time-stamped when its bytes
arrive (before parsing, so parsing time never inflates a latency); token counts come from the final usage
chunk (``stream_options.include_usage``). Failures never raise: they are classified into `FailureReason` on
the `RequestTiming` that the caller passed in, which also keeps what was measured before the failure.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from types import SimpleNamespace, TracebackType
from typing import Any, Literal, Self

import aiohttp
import orjson

from quantbench_loadgen.results import FailureReason
from quantbench_loadgen.stats import RequestTiming

Endpoint = Literal["completions", "chat"]
_ENDPOINT_PATHS: dict[str, str] = {"completions": "/completions", "chat": "/chat/completions"}
_DETAIL_MAX = 300


def api_base(url: str) -> str:
    """The ``.../v1`` base of an OpenAI-compatible server, from ``http://host:port`` or ``.../v1``."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"server url {url!r} must start with http:// or https://")
    return base if base.endswith("/v1") else base + "/v1"


def server_root(url: str) -> str:
    """The server root (without ``/v1``), where vLLM serves /tokenize, /health and /metrics."""
    base = api_base(url)
    return base[: -len("/v1")]


async def post_json(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One non-streamed JSON request (tokenize, detokenize, a completion with log-probabilities); an answer
    other than 200 raises with the server's words."""
    async with http.post(url, json=body) as resp:
        data: dict[str, Any] = await resp.json(content_type=None)
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {str(data)[:_DETAIL_MAX]}")
        return data


def request_body(
    *,
    endpoint: Endpoint,
    model: str,
    prompt: str,
    max_tokens: int,
    ignore_eos: bool,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The JSON body of one streamed request, with usage in the stream."""
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True}}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        body["max_completion_tokens"] = max_tokens
    else:
        body["prompt"] = prompt
        body["max_tokens"] = max_tokens
    if ignore_eos:
        body["ignore_eos"] = True
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


class StreamingClient:
    """A pooled aiohttp session against one server and endpoint. Use as an async context manager."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: Endpoint = "completions",
        api_key: str | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        keep_text: bool = False,
    ) -> None:
        self.base_url = url
        self.url = api_base(url) + _ENDPOINT_PATHS[endpoint]
        self.endpoint = endpoint
        self.keep_text = keep_text
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.api_key = key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        # The send time is when the request body was written to the connection, not when `post` was
        # called: aiohttp prepares the request and, on Python < 3.12, writes the body in a task of its own,
        # which a busy event loop runs later. Stamping at the write keeps that queueing out of TTFT.
        sent = aiohttp.TraceConfig()
        sent.on_request_chunk_sent.append(_stamp_sent)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            trace_configs=[sent],
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def server_version(self) -> str | None:
        """The version the server reports at GET /version (vLLM: {"version": "0.11.0"}); None if it does not."""
        assert self._session is not None, "use StreamingClient as an async context manager"
        try:
            headers = {"Authorization": self._headers["Authorization"]} if self.api_key else {}
            async with self._session.get(server_root(self.base_url) + "/version", headers=headers) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return str(version) if version else None

    async def send(self, body: bytes, timing: RequestTiming, request_id: str | None = None) -> RequestTiming:
        """Send one streamed request and fill ``timing``. Never raises, except `asyncio.CancelledError`
        (after marking the request cancelled)."""
        session = self._session
        if session is None:
            raise RuntimeError("StreamingClient must be used as 'async with StreamingClient(...)'")
        headers = self._headers if request_id is None else {**self._headers, "X-Request-Id": request_id}
        timing.request_id = request_id
        chunk_times = timing.chunk_times
        text_parts = timing.text_parts = [] if self.keep_text else None
        chat = self.endpoint == "chat"
        loads = orjson.loads
        clock = time.perf_counter
        done = False
        timing.send = clock()
        try:
            async with session.post(
                self.url, data=body, headers=headers, trace_request_ctx={"timing": timing}
            ) as resp:
                timing.http_status = resp.status
                if resp.status != 200:
                    text = await resp.text(errors="replace")
                    timing.end = clock()
                    timing.error = FailureReason.HTTP_STATUS
                    timing.error_detail = _short(f"HTTP {resp.status}: {text}")
                    return timing
                buf = b""
                async for data in resp.content.iter_any():
                    now = clock()
                    if b"\r" in data:
                        data = data.replace(b"\r\n", b"\n")
                    buf = buf + data if buf else data
                    if b"\n\n" not in buf:
                        continue
                    *events, buf = buf.split(b"\n\n")
                    for event in events:
                        if event.startswith(b"data: "):
                            payload = event[6:]
                        elif not event or event.startswith(b":"):
                            continue  # keep-alive comment or empty event
                        else:
                            field = _data_field(event)
                            if field is None:
                                continue
                            payload = field
                        if payload == b"[DONE]":
                            done = True
                            continue
                        obj = loads(payload)
                        if type(obj) is not dict:
                            raise ValueError(f"SSE data is not a JSON object: {payload[:80]!r}")
                        choices = obj.get("choices")
                        if choices:
                            chunk_times.append(now)
                            if text_parts is not None:
                                first = choices[0]
                                piece = first.get("delta", {}).get("content") if chat else first.get("text")
                                if piece:
                                    text_parts.append(piece)
                        usage = obj.get("usage")
                        if usage:
                            timing.prompt_tokens = usage.get("prompt_tokens")
                            timing.output_tokens = usage.get("completion_tokens")
                        if "error" in obj and not choices:
                            err = obj["error"]
                            msg = err.get("message", err) if isinstance(err, dict) else err
                            timing.end = clock()
                            timing.error = FailureReason.SERVER_ERROR
                            timing.error_detail = _short(f"error in stream: {msg}")
                            return timing
            timing.end = clock()
            if buf.strip():
                timing.error, timing.error_detail = (
                    FailureReason.MALFORMED,
                    _short(f"trailing data {buf[:80]!r}"),
                )
            elif not done:
                timing.error = FailureReason.DISCONNECT
                timing.error_detail = "the stream ended before data: [DONE]"
            elif not chunk_times:
                timing.error, timing.error_detail = FailureReason.EMPTY, "the stream carried no token"
            elif timing.output_tokens is None:
                timing.error = FailureReason.MALFORMED
                timing.error_detail = (
                    "no usage in the stream: the server must support stream_options.include_usage"
                )
        except asyncio.CancelledError:
            timing.end = clock()
            timing.error, timing.error_detail = (
                FailureReason.CANCELLED,
                "the run ended while it was in flight",
            )
            raise
        except TimeoutError:
            timing.end = clock()
            timing.error, timing.error_detail = FailureReason.TIMEOUT, "no complete answer within the timeout"
        except aiohttp.ClientConnectorError as exc:
            timing.end = clock()
            timing.error, timing.error_detail = FailureReason.CONNECT, _short(str(exc))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            timing.end = clock()
            timing.error, timing.error_detail = (
                FailureReason.DISCONNECT,
                _short(f"{type(exc).__name__}: {exc}"),
            )
        except (orjson.JSONDecodeError, ValueError, AttributeError, TypeError) as exc:
            timing.end = clock()
            timing.error, timing.error_detail = (
                FailureReason.MALFORMED,
                _short(f"{type(exc).__name__}: {exc}"),
            )
        except aiohttp.ClientError as exc:
            timing.end = clock()
            reason = FailureReason.DISCONNECT if timing.http_status is not None else FailureReason.CONNECT
            timing.error, timing.error_detail = reason, _short(f"{type(exc).__name__}: {exc}")
        return timing


async def _stamp_sent(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams
) -> None:
    request_ctx = ctx.trace_request_ctx
    if request_ctx is not None:
        request_ctx["timing"].send = time.perf_counter()


def _data_field(event: bytes) -> bytes | None:
    """The data of a general SSE event (several lines, ``data:`` with or without a space), or None."""
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None
