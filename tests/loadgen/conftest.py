"""Fixtures of the load-generator tests: scripted ground-truth servers and their tokenizer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quantbench_loadgen.testing.scripted_server import write_tokenizer

ScriptedFactory = Callable[..., str]


@pytest.fixture(scope="session")
def scripted_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripted server's vocabulary as a local tokenizer folder."""
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScriptedFactory]:
    """``scripted_server(ttft_ms=20, itl_ms=5, record=True)`` → base URL of a running scripted server
    with that script (one process per distinct script, kept for the session, stopped by PID)."""
    servers: dict[tuple[object, ...], tuple[subprocess.Popen[bytes], str]] = {}

    def start(
        ttft_ms: float = 0.0,
        itl_ms: float = 0.0,
        record: bool = False,
        separate_writes: bool = False,
        slots: int = 0,
    ) -> str:
        key = (ttft_ms, itl_ms, record, separate_writes, slots)
        if key in servers:
            return servers[key][1]
        port_file = tmp_path_factory.mktemp("scripted") / "port"
        cmd = [
            sys.executable, "-m", "quantbench_loadgen.testing.scripted_server", "--port", "0",
            "--port-file", str(port_file), "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms),
        ]  # fmt: skip
        if record:
            cmd.append("--record")
        if separate_writes:
            cmd.append("--separate-writes")
        if slots:
            cmd += ["--slots", str(slots)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("scripted server did not start")
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        servers[key] = (proc, url)
        return url

    yield start
    for proc, _ in servers.values():
        proc.terminate()
        proc.wait(10)


def closed_port() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
