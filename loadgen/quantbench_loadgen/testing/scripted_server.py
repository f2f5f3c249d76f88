"""A scripted OpenAI-compatible streaming server: the ground truth for measuring load generators.

Every streamed answer has exactly ``max_tokens`` token chunks; the first is written ``ttft_ms`` after the
request's body arrived, each next one ``itl_ms`` after the previous (both scripted). Optionally the server
records when it actually wrote each chunk (``GET /scripted/log``), so a client's timing error can be told
apart from the server's own timer lateness. It is a plain asyncio protocol (uvloop when installed), several
processes on one port with ``--workers``, so that it stays cheaper per token than any client it measures.

With ``slots`` > 0 the server is a queue with that many servers: at most ``slots`` answers stream at once
(per worker process); later requests wait in arrival order, and a waiting request's TTFT clock starts when
it gets a slot, so the client sees the wait in its TTFT. Each answer holds its slot for
``ttft_ms + (max_tokens - 1) * itl_ms``, so the service rate is known: ``slots / that`` requests per second.

Faults for tests are chosen by the model name: ``fault-http500``, ``fault-malformed`` (invalid JSON in the
stream), ``fault-disconnect`` (closes after ``max_tokens // 2`` chunks), ``fault-hang`` (never answers),
``fault-nousage`` (no usage chunk), ``fault-error`` (an error object in the stream).

A whitespace tokenizer over a fixed vocabulary backs ``/tokenize`` and ``/detokenize``; `write_tokenizer`
writes the same vocabulary as a Hugging Face ``tokenizer.json`` folder for clients that tokenize locally.

Run: ``python -m quantbench_loadgen.testing.scripted_server --port 8123 --ttft-ms 20 --itl-ms 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from quantbench_loadgen.datasets import WORDS

VOCAB: list[str] = ["[UNK]", *dict.fromkeys(WORDS)]
_INDEX = {w: i for i, w in enumerate(VOCAB)}
_CLOCK = time.perf_counter


@dataclass
class Script:
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    spin_ms: float = 0.0  # wake this much early and busy-wait to the exact time (precision over CPU)
    record: bool = False
    coalesce: bool = True  # with no delays, write a whole answer at once (else one write per token)
    slots: int = 0  # answers streamed at once; 0: no limit (no queue)
    log: dict[str, list[float]] = field(default_factory=dict)
    # What GET /metrics reports under vLLM's names (per worker process): answers being streamed, tokens.
    running: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0

    def metrics(self) -> bytes:
        """A Prometheus exposition with the vLLM metric names this server can answer truthfully."""
        lines = []
        for name, kind, value in (
            ("vllm:num_requests_running", "gauge", self.running),
            ("vllm:num_requests_waiting", "gauge", len(self.waiting)),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens),
        ):
            family = name.removesuffix("_total")
            lines += [f"# TYPE {family} {kind}", f'{name}{{model_name="scripted"}} {float(value)}']
        return ("\n".join(lines) + "\n").encode()

    active: int = 0
    waiting: deque[Callable[[], None]] = field(default_factory=deque)

    def service_rate_per_s(self, max_tokens: int) -> float:
        """Requests per second the queue completes when always busy (slots > 0 and some delay scripted)."""
        hold_s = (self.ttft_ms + (max_tokens - 1) * self.itl_ms) / 1000.0
        if self.slots <= 0 or hold_s <= 0:
            raise ValueError("a service rate needs slots > 0 and a scripted delay")
        return self.slots / hold_s


SCRIPTED_VERSION = "0.0.0+scripted"  # what GET /version answers, as vLLM's server does with its version


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(obj: Any) -> bytes:
    return _chunked(b"data: " + orjson.dumps(obj) + b"\n\n")


_DONE = _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _json_response(status: int, obj: Any) -> bytes:
    body = orjson.dumps(obj)
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 500: b"Internal Server Error"}[status]
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        reason,
        len(body),
        body,
    )


def _text_response(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


def tokenize(text: str) -> list[int]:
    return [_INDEX.get(w, 0) for w in text.split()]


class StreamProtocol(asyncio.Protocol):
    def __init__(self, script: Script) -> None:
        self.script = script
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.answer_tokens = 0
        self.holding = False  # holds one of the script's slots
        self.handles: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        for h in self.handles:
            h.cancel()
        if self.busy:  # the client left mid-answer: it no longer runs
            self.script.running -= 1
            self.busy = False
        self.transport = None

    def data_received(self, data: bytes) -> None:
        recv = _CLOCK()
        self.buf += data
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            self.handle(method, path, headers, body, recv)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes, recv: float) -> None:
        if method == "GET" and path in ("/v1/models", "/models"):
            self.write(
                _json_response(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
            )
        elif method == "GET" and path == "/metrics":
            self.write(_text_response(self.script.metrics()))
        elif method == "GET" and path == "/version":
            self.write(_json_response(200, {"version": SCRIPTED_VERSION}))
        elif method == "GET" and path == "/health":
            self.write(_json_response(200, {}))
        elif method == "GET" and path == "/scripted/log":
            log, self.script.log = self.script.log, {}
            self.write(_json_response(200, log))
        elif method == "POST" and path == "/tokenize":
            req = orjson.loads(body)
            ids = tokenize(str(req.get("prompt", "")))
            self.write(_json_response(200, {"tokens": ids, "count": len(ids), "max_model_len": 1 << 20}))
        elif method == "POST" and path == "/detokenize":
            req = orjson.loads(body)
            text = " ".join(VOCAB[i] if 0 <= i < len(VOCAB) else "[UNK]" for i in req.get("tokens", []))
            self.write(_json_response(200, {"prompt": text}))
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            try:
                req = orjson.loads(body)
            except orjson.JSONDecodeError:
                self.write(_json_response(400, {"error": {"message": "body is not JSON"}}))
                return
            self.stream(req, path.endswith("chat/completions"), headers.get("x-request-id"), recv)
        else:
            self.write(_json_response(404, {"error": {"message": f"no route {method} {path}"}}))

    def stream(self, req: dict[str, Any], chat: bool, request_id: str | None, recv: float) -> None:
        model = str(req.get("model", "scripted"))
        if model == "fault-http500":
            self.write(_json_response(500, {"error": {"message": "scripted failure"}}))
            return
        if model == "fault-hang":
            return
        self.busy = True
        script = self.script
        if script.slots > 0:
            if script.active >= script.slots:
                script.waiting.append(lambda: self._begin(req, chat, request_id, recv, queued=True))
                return
            script.active += 1
            self.holding = True
        self._begin(req, chat, request_id, recv, queued=False)

    def _begin(
        self, req: dict[str, Any], chat: bool, request_id: str | None, recv: float, queued: bool
    ) -> None:
        """Stream an answer; a request that waited for a slot takes it now and starts its clock now."""
        script = self.script
        if queued:
            script.active += 1
            self.holding = True
            if self.transport is None:  # the client left while waiting: release the slot, count nothing
                self.busy = False
                self.done()
                return
            recv = _CLOCK()
        model = str(req.get("model", "scripted"))
        n = int(req.get("max_completion_tokens") or req.get("max_tokens") or 16)
        if chat:
            prompt = " ".join(str(m.get("content", "")) for m in req.get("messages", []))
        else:
            prompt = str(req.get("prompt", ""))
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": n}
        usage["total_tokens"] = usage["prompt_tokens"] + n
        self.answer_tokens = n
        script.running += 1
        script.prompt_tokens += usage["prompt_tokens"]
        kind = "chat.completion.chunk" if chat else "text_completion"
        base: dict[str, Any] = {"id": "cmpl-scripted", "object": kind, "created": 0, "model": model}

        def choice(finish: str | None) -> dict[str, Any]:
            if chat:
                return {"index": 0, "delta": {"content": " tok"}, "finish_reason": finish}
            return {"index": 0, "text": " tok", "logprobs": None, "finish_reason": finish}

        token = _sse(base | {"choices": [choice(None)]})
        last = _sse(base | {"choices": [choice("length")]})
        tail = b"" if model == "fault-nousage" else _sse(base | {"choices": [], "usage": usage})
        tail += _DONE
        times: list[float] | None = None
        if script.record and request_id is not None:
            times = script.log[request_id] = [recv]
        cut = n // 2 if model == "fault-disconnect" else None
        parts = [token] * (n - 1) + [last]
        if model == "fault-malformed" and n > 1:
            parts[1] = _chunked(b"data: {not json\n\n")
        if model == "fault-error":
            parts[min(1, n - 1)] = _sse({"error": {"message": "scripted error", "code": 500}})
        self.write(_STREAM_HEAD)
        if script.ttft_ms == 0 and script.itl_ms == 0 and cut is None and script.coalesce:
            if times is not None:
                times.extend([_CLOCK()] * n)
            self.write(b"".join(parts) + tail)
            self.done()
            return
        loop = asyncio.get_running_loop()
        # Deadlines on the real monotonic clock, anchored at the request's arrival. The loop's own clock
        # may lag it by up to a millisecond (uvloop caches it), so a timer is only a wake-up: a write is
        # never early, and with spin_ms the last stretch is busy-waited to be on time.
        ttft, itl, spin = script.ttft_ms / 1000.0, script.itl_ms / 1000.0, script.spin_ms / 1000.0

        def wake(k: int) -> None:
            delay = recv + ttft + k * itl - spin - _CLOCK()
            if delay > 0:
                self.handles = [loop.call_later(delay, send, k)]
            else:
                send(k)

        def send(k: int) -> None:
            due = recv + ttft + k * itl
            now = _CLOCK()
            if now < due:
                if due - now > spin + 0.0002:
                    self.handles = [loop.call_later(due - now - spin, send, k)]
                    return
                while _CLOCK() < due:
                    pass
            if k == cut:
                if self.transport is not None:
                    self.transport.close()
                self.done()
                return
            if times is not None:
                times.append(_CLOCK())
            self.write(parts[k] if k < n - 1 else parts[k] + tail)
            if k == n - 1:
                self.done()
            elif ttft == 0 and itl == 0:
                loop.call_soon(send, k + 1)  # one write per token, as fast as the loop turns
            else:
                wake(k + 1)

        if ttft == 0 and itl == 0:
            loop.call_soon(send, 0)
        else:
            wake(0)

    def done(self) -> None:
        if self.busy:
            self.script.running -= 1
            self.script.generation_tokens += self.answer_tokens
        self.busy = False
        self.handles = []
        if self.holding:
            self.holding = False
            self.script.active -= 1
            if self.script.waiting:
                self.script.waiting.popleft()()
        if self.buf:
            self.data_received(b"")


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def serve(host: str, port: int, script: Script, ready: Callable[[int], None] | None = None) -> None:
    """Serve until cancelled; ``ready(port)`` is called once listening (port 0 picks a free one)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StreamProtocol(script), sock=_listen(host, port, reuse_port=True)
    )
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    async with server:
        await server.serve_forever()


def _run_worker(host: str, port: int, script: Script, port_file: str | None) -> None:
    def ready(bound: int) -> None:
        if port_file:
            Path(port_file).write_text(str(bound))
        print(json.dumps({"listening": f"http://{host}:{bound}", "pid": os.getpid()}), flush=True)

    _use_uvloop()
    asyncio.run(serve(host, port, script, ready))


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8123, help="0 picks a free port (with --workers 1)")
    p.add_argument("--ttft-ms", type=float, default=0.0)
    p.add_argument("--itl-ms", type=float, default=0.0)
    p.add_argument("--spin-ms", type=float, default=0.0, help="busy-wait this long before each write")
    p.add_argument("--record", action="store_true", help="keep actual write times for GET /scripted/log")
    p.add_argument("--separate-writes", action="store_true", help="with no delays: one write per token")
    p.add_argument(
        "--slots", type=int, default=0, help="answers streamed at once; later ones queue (0: no limit)"
    )
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    a = p.parse_args(argv)
    script = Script(
        ttft_ms=a.ttft_ms,
        itl_ms=a.itl_ms,
        spin_ms=a.spin_ms,
        record=a.record,
        coalesce=not a.separate_writes,
        slots=a.slots,
    )
    if a.workers > 1 and a.port == 0:
        p.error("--workers > 1 needs a fixed --port")
    children: list[int] = []

    def stop(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    for _ in range(a.workers - 1):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _run_worker(a.host, a.port, script, None)
            os._exit(0)
        children.append(pid)
    try:
        _run_worker(a.host, a.port, script, a.port_file)
    except KeyboardInterrupt:
        stop()
    return 0


def write_tokenizer(folder: Path) -> Path:
    """Write the scripted server's whitespace tokenizer as a Hugging Face tokenizer folder (tokenizer.json
    and tokenizer_config.json), so that clients tokenizing locally count exactly what the server counts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(vocab=_INDEX, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 1 << 20}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


if __name__ == "__main__":
    raise SystemExit(main())
