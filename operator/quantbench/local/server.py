"""A vLLM OpenAI-compatible server as a local subprocess: start on a free loopback port, wait for /health,
read what the log says about weights, stop by process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message carries the log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def log_excerpt(path: Path, errors: int = 8, lines: int = 30) -> str:
    """The log's last error lines (a server's cause of death is often far above its last line), then its tail."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    found = [line for line in text[:-lines] if "Error" in line or "error:" in line][-errors:]
    head = ["errors:", *found, "tail:"] if found else []
    return "\n".join(head + text[-lines:])


@dataclass
class ServerProcess:
    """One running server. Use `start_server` to make one."""

    name: str
    url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    started_at: float
    ready_seconds: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def healthy(self, health_path: str = "/health") -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}{health_path}", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def watch_ready(self, poll_s: float = 0.5, health_path: str = "/health") -> None:
        """Note when `health_path` first answers 200, from a background thread: for a server started before
        anyone waits on it, so that `wait_ready` gives its true start-up time, not the time of the first call."""

        def watch() -> None:
            while self.ready_seconds is None and self.process.poll() is None:
                if self.healthy(health_path):
                    self.ready_seconds = time.monotonic() - self.started_at
                    return
                time.sleep(poll_s)

        threading.Thread(target=watch, name=f"{self.name}-ready", daemon=True).start()

    def wait_ready(self, timeout_s: float, poll_s: float = 0.5, health_path: str = "/health") -> float:
        """Block until `health_path` answers 200; return seconds since start (since `watch_ready` saw it
        answer, when that came first). Raises ServerStartError."""
        deadline = self.started_at + timeout_s
        while time.monotonic() < deadline:
            if self.ready_seconds is not None:
                return self.ready_seconds
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name}: server exited with code {self.process.returncode} before it was ready; "
                    f"log {self.log_path}:\n{log_excerpt(self.log_path)}"
                )
            if self.healthy(health_path):
                self.ready_seconds = time.monotonic() - self.started_at
                return self.ready_seconds
            time.sleep(poll_s)
        self.stop()
        raise ServerStartError(
            f"{self.name}: not healthy after {timeout_s:.0f} s (raise spec.server.startupTimeout if the "
            f"model is large); log {self.log_path}:\n{log_excerpt(self.log_path)}"
        )

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after the grace period."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


def start_server(
    name: str,
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start `argv` (which must listen on `port`, see `free_port`) in its own process group."""
    port = port or free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    return ServerProcess(
        name=name,
        url=f"http://127.0.0.1:{port}",
        port=port,
        log_path=log_path,
        process=process,
        started_at=time.monotonic(),
        _log=log,
    )
