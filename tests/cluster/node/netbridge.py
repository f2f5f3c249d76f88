"""The only path between the host and the real node's network namespace, as a small userspace proxy (no
route, veth, NAT or address is added to the host's namespace):

* apiserver -> node: an HTTP CONNECT proxy on a unix socket (the apiserver's egress selection for
  "cluster" traffic: kubelet logs/exec, pod and Service proxy). It dials only addresses that live in the
  node's namespace (``--allow``, e.g. the node IP and the pod and Service ranges) and refuses the rest;
* node -> apiserver: for each ``--forward PORT``, a listener on every address of the node's namespace
  (so on its 127.0.0.1 for the kubelet, kube-proxy and CoreDNS, and on the node IP for pods, through the
  ``kubernetes`` Service) that connects to 127.0.0.1:PORT on the host.

Sockets are created in the node's namespace by switching this (single) thread into it just for the
``socket()`` call: a socket stays in the namespace it was made in.

    python -m tests.cluster.node.netbridge --netns /run/netns/NAME --egress-socket PATH \\
        --forward 6443 --allow 10.250.0.1/32 --allow 10.244.0.0/16 --allow 10.96.0.0/16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetNamespaces:
    """The host's network namespace (this process's at start) and the node's."""

    def __init__(self, node_netns: Path) -> None:
        self.host_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.node_fd = os.open(node_netns, os.O_RDONLY)

    @contextlib.contextmanager
    def node(self) -> Iterator[None]:
        setns(self.node_fd, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(self.host_fd, CLONE_NEWNET)

    def close(self) -> None:
        os.close(self.host_fd)
        os.close(self.node_fd)

    def node_socket(self) -> socket.socket:
        with self.node():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock


Networks = Sequence[ipaddress.IPv4Network]


def parse_connect(request: bytes, allowed: Networks) -> tuple[str, int]:
    """The (ip, port) an HTTP CONNECT request asks for; ValueError with the reason when it is refused
    (pure)."""
    line = request.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) != 3 or parts[0] != "CONNECT":
        raise ValueError(f"not a CONNECT request: {line!r}")
    host, sep, port_text = parts[1].rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"no port in {parts[1]!r}")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (names are not resolved here)") from None
    if not any(ip in net for net in allowed):
        raise ValueError(f"{ip} is not an address of the node's network namespace")
    return str(ip), int(port_text)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))


class Bridge:
    def __init__(self, ns: NetNamespaces, allowed: Networks) -> None:
        self.ns = ns
        self.allowed = allowed

    async def _connect_in_node(self, ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = self.ns.node_socket()
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (ip, port)), 10)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def handle_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            try:
                ip, port = parse_connect(request, self.allowed)
            except ValueError as e:
                print(f"netbridge: refused: {e}", file=sys.stderr, flush=True)
                writer.write(f"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nX-Reason: {e}\r\n\r\n".encode())
                await writer.drain()
                writer.close()
                return
            try:
                upstream = await self._connect_in_node(ip, port)
            except (OSError, TimeoutError) as e:
                print(f"netbridge: dial {ip}:{port}: {e}", file=sys.stderr, flush=True)
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _splice((reader, writer), upstream)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()

    async def handle_forward(
        self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, TimeoutError) as e:
            print(f"netbridge: forward to 127.0.0.1:{port}: {e}", file=sys.stderr, flush=True)
            writer.close()
            return
        await _splice((reader, writer), upstream)

    async def serve(self, egress_socket: Path, forward_ports: Sequence[int]) -> None:
        servers = []
        for port in forward_ports:
            sock = self.ns.node_socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(128)

            async def on_forward(r: asyncio.StreamReader, w: asyncio.StreamWriter, port: int = port) -> None:
                await self.handle_forward(port, r, w)

            servers.append(await asyncio.start_server(on_forward, sock=sock))
        egress_socket.unlink(missing_ok=True)
        servers.append(await asyncio.start_unix_server(self.handle_connect, path=str(egress_socket)))
        print(f"netbridge: ready (egress {egress_socket}, forwarding {list(forward_ports)})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for server in servers:
            server.close()
        egress_socket.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.node.netbridge", description=__doc__)
    parser.add_argument("--netns", type=Path, required=True)
    parser.add_argument("--egress-socket", type=Path, required=True)
    parser.add_argument("--forward", type=int, action="append", default=[])
    parser.add_argument("--allow", type=ipaddress.IPv4Network, action="append", default=[])
    args = parser.parse_args(argv)
    bridge = Bridge(NetNamespaces(args.netns), args.allow)
    asyncio.run(bridge.serve(args.egress_socket, args.forward))
    return 0


if __name__ == "__main__":
    sys.exit(main())
