"""Start and stop a real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (which plays the kubelets of the simulated node pools).

Every component listens on 127.0.0.1 on a free port; all state lives in one work directory:

    <workdir>/pki/          CA, apiserver serving cert, admin client cert, service-account signing key
    <workdir>/etcd/         etcd data
    <workdir>/logs/*.log    one log per component
    <workdir>/kubeconfig    cluster-admin kubeconfig (client certificate, O=system:masters)
    <workdir>/state.json    ports and process ids (used by `python -m tests.cluster down`)
    <workdir>/egress.sock   where the apiserver sends its traffic to nodes, pods and Services (kubelet
                            logs/exec, proxy): an HTTP CONNECT proxy the real node (tests/cluster/node)
                            serves into its own network namespace; absent without a real node, so that
                            traffic fails instead of leaving the machine
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from pydantic import BaseModel

from tests.cluster.certs import Pki, make_pki
from tests.cluster.pools import PoolSet, build_nodes, load_pools

CLUSTER_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(os.environ.get("CLUSTER_BIN_DIR", CLUSTER_DIR / "bin"))
WORK_ROOT = CLUSTER_DIR / ".work"
KWOK_CONFIG = CLUSTER_DIR / "kwok-stages.yaml"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME = "quantbench-test"
EGRESS_SOCKET = "egress.sock"
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


class ControlPlaneError(RuntimeError):
    """A component did not start; the message names it and quotes the end of its log."""


class Ports(BaseModel):
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


class State(BaseModel):
    """What `up` leaves behind for `env`/`down`."""

    workdir: str
    bin_dir: str
    kubeconfig: str
    server: str
    ports: Ports
    pids: dict[str, int]
    startup_seconds: float
    ready_after_seconds: dict[str, float] = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_binaries(bin_dir: Path = BIN_DIR) -> None:
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"missing control-plane binaries in {bin_dir}: {', '.join(missing)}; "
            "build them with `make cluster-bin` (bash tests/cluster/build.sh)"
        )


def kubeconfig_dict(
    server: str, ca_pem: bytes, user: dict[str, str], namespace: str = "default"
) -> dict[str, Any]:
    """A one-cluster, one-user kubeconfig with everything embedded (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [
            {
                "name": CLUSTER_NAME,
                "context": {"cluster": CLUSTER_NAME, "user": "user", "namespace": namespace},
            }
        ],
        "current-context": CLUSTER_NAME,
    }


def admin_kubeconfig(server: str, pki: Pki) -> dict[str, Any]:
    user = {
        "client-certificate-data": base64.b64encode(pki.admin_cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(pki.admin_key.read_bytes()).decode(),
    }
    return kubeconfig_dict(server, pki.ca_cert.read_bytes(), user)


def egress_selector_config(socket_path: Path) -> dict[str, Any]:
    """The apiserver's egress selection (pure): traffic to the cluster (kubelets, pods, Services) goes
    through an HTTP CONNECT proxy on a unix socket; control-plane and etcd traffic stays direct."""
    return {
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [
            {
                "name": "cluster",
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    "transport": {"uds": {"udsName": str(socket_path)}},
                },
            }
        ],
    }


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until_ready(
    name: str,
    ready: Callable[[], bool],
    processes: dict[str, subprocess.Popen[bytes]],
    log_dir: Path,
    timeout: float,
    error: type[Exception],
    transient: tuple[type[Exception], ...],
    poll_s: float,
) -> None:
    """Poll ``ready`` until it holds; fail with ``error`` (naming the log) when any of ``processes`` exits
    or ``timeout`` passes. Errors of the ``transient`` kinds count as not ready yet."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc_name, proc in processes.items():
            if proc.poll() is not None:
                raise error(
                    f"{proc_name} exited with code {proc.returncode} while waiting for {name}; "
                    f"last lines of {log_dir / (proc_name + '.log')}:\n"
                    f"{log_tail(log_dir / (proc_name + '.log'))}"
                )
        try:
            if ready():
                return
        except transient as e:
            last_error = str(e)
        time.sleep(poll_s)
    raise error(
        f"{name} not ready after {timeout:.0f} s (last error: {last_error or 'none'}); "
        f"last lines of its log:\n{log_tail(log_dir / (name + '.log'))}"
    )


@dataclass
class ControlPlane:
    """One control plane. ``detach=True`` keeps the processes alive after this Python process exits."""

    workdir: Path
    bin_dir: Path = BIN_DIR
    pools: PoolSet = field(default_factory=load_pools)
    detach: bool = False
    start_timeout: float = 90.0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    startup_seconds: float = field(default=0.0, init=False)
    ready_after: dict[str, float] = field(default_factory=dict, init=False)
    _logs: list[IO[bytes]] = field(default_factory=list, init=False)
    _t0: float = field(default=0.0, init=False)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def egress_socket(self) -> Path:
        return self.workdir / EGRESS_SOCKET

    # ----------------------------------------------------------------------------------------- start
    def start(self) -> State:
        check_binaries(self.bin_dir)
        t0 = self._t0 = time.monotonic()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.log_dir.mkdir(parents=True)
        if len(str(self.egress_socket)) > UNIX_PATH_MAX:
            raise ControlPlaneError(
                f"work directory {self.workdir} is too deep for a unix socket in it; use a shorter path"
            )
        pki = make_pki(self.pki_dir)
        egress_config = self.workdir / "egress-selector.yaml"
        egress_config.write_text(yaml.safe_dump(egress_selector_config(self.egress_socket), sort_keys=False))
        ports = Ports(
            etcd_client=free_port(),
            etcd_peer=free_port(),
            apiserver=free_port(),
            controller_manager=free_port(),
            scheduler=free_port(),
            kwok=free_port(),
        )
        server = f"https://127.0.0.1:{ports.apiserver}"
        self.kubeconfig.write_text(yaml.safe_dump(admin_kubeconfig(server, pki), sort_keys=False))
        self.kubeconfig.chmod(0o600)
        try:
            self._spawn("etcd", self._etcd_args(ports))
            self._wait(
                "etcd",
                lambda: b'"health":"true"' in _http_get(f"http://127.0.0.1:{ports.etcd_client}/health"),
            )
            self._spawn("kube-apiserver", self._apiserver_args(ports, pki, egress_config))
            ctx = _client_ssl_context(pki)
            self._wait("kube-apiserver", lambda: _http_get(f"{server}/readyz", ctx) == b"ok")
            self._spawn("kube-controller-manager", self._controller_manager_args(ports, pki))
            self._spawn("kube-scheduler", self._scheduler_args(ports))
            self._spawn("kwok", self._kwok_args(ports))
            api = k8s_config.new_client_from_config(config_file=str(self.kubeconfig))
            with api:
                core = k8s.CoreV1Api(api)
                for node in build_nodes(self.pools):
                    core.create_node(cast(Any, node))  # the client accepts plain manifests
                insecure = ssl.create_default_context()
                insecure.check_hostname = False
                insecure.verify_mode = ssl.CERT_NONE
                for name, port in (
                    ("kube-scheduler", ports.scheduler),
                    ("kube-controller-manager", ports.controller_manager),
                ):
                    self._wait(name, _healthz_check(f"https://127.0.0.1:{port}/healthz", insecure))
                self._wait("kwok", lambda: _all_nodes_ready(core, self.pools.node_count()))
                self._wait(
                    "kube-controller-manager", lambda: _has_service_account(core, "default", "default")
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        state = State(
            workdir=str(self.workdir),
            bin_dir=str(self.bin_dir),
            kubeconfig=str(self.kubeconfig),
            server=server,
            ports=ports,
            pids={name: p.pid for name, p in self.processes.items()},
            startup_seconds=round(self.startup_seconds, 2),
            ready_after_seconds={k: round(v, 2) for k, v in self.ready_after.items()},
        )
        self.state_file.write_text(state.model_dump_json(indent=2))
        return state

    def _etcd_args(self, ports: Ports) -> list[str]:
        client_url = f"http://127.0.0.1:{ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
        return [
            "--name=test",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def _apiserver_args(self, ports: Ports, pki: Pki, egress_config: Path) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",  # loopback may not back the kubernetes Service
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",  # Node: what a real node's kubelet may read and write
            # to kubelets (logs, exec): as cluster-admin, verifying their serving certificates, by InternalIP,
            # through the egress proxy of the real node (see egress_selector_config)
            f"--kubelet-client-certificate={pki.admin_cert}",
            f"--kubelet-client-key={pki.admin_key}",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--egress-selector-config-file={egress_config}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_args(self, ports: Ports, pki: Pki) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            f"--cert-dir={self.workdir / 'controller-manager'}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--use-service-account-credentials=false",
            "--controllers=*",
            "--profiling=false",
            "--v=1",
        ]

    def _scheduler_args(self, ports: Ports) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            f"--cert-dir={self.workdir / 'scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def _kwok_args(self, ports: Ports) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={KWOK_CONFIG}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--server-address=127.0.0.1:{ports.kwok}",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
        ]

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        env = dict(os.environ)
        env["HOME"] = str(
            self.workdir
        )  # kwok and kubectl-style tools read ~/.kwok, ~/.kube: keep them private
        self.processes[name] = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=env,
            start_new_session=True,
            preexec_fn=None if self.detach else _die_with_parent,
        )

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        wait_until_ready(
            name,
            ready,
            self.processes,
            self.log_dir,
            self.start_timeout,
            ControlPlaneError,
            (OSError, ApiException, urllib.error.URLError),
            poll_s=0.1,
        )
        self.ready_after[name] = time.monotonic() - self._t0

    # ------------------------------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Terminate every component, newest first and one at a time (the apiserver shuts down cleanly
        only while etcd still runs), escalating to SIGKILL after a grace period."""
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


def _client_ssl_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return ctx


def _http_get(url: str, ctx: ssl.SSLContext | None = None) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError:
        return b""


def _healthz_check(url: str, ctx: ssl.SSLContext) -> Callable[[], bool]:
    return lambda: _http_get(url, ctx) == b"ok"


def _all_nodes_ready(core: k8s.CoreV1Api, expected: int) -> bool:
    nodes = core.list_node(label_selector="type=kwok").items
    ready = [
        n
        for n in nodes
        if n.status is not None
        and any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
        and not any(t.key == "node.kubernetes.io/not-ready" for t in ((n.spec and n.spec.taints) or []))
    ]
    return len(ready) == expected


def _has_service_account(core: k8s.CoreV1Api, namespace: str, name: str) -> bool:
    with contextlib.suppress(ApiException):
        core.read_namespaced_service_account(name, namespace)
        return True
    return False


# ------------------------------------------------------------------------- detached (CLI) helpers
def read_state(workdir: Path) -> State | None:
    path = workdir / "state.json"
    if not path.exists():
        return None
    return State.model_validate(json.loads(path.read_text()))


def _pid_runs_binary(pid: int, bin_dir: Path) -> bool:
    try:
        exe = Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return exe.parent == bin_dir.resolve()


def running_pids(state: State) -> dict[str, int]:
    """The recorded processes that are still alive and still run one of our binaries."""
    bin_dir = Path(state.bin_dir)
    return {name: pid for name, pid in state.pids.items() if _pid_runs_binary(pid, bin_dir)}


def stop_detached(state: State, grace: float = 10.0) -> list[str]:
    """Stop the processes recorded in ``state`` (by pid); returns the names that were running."""
    alive = running_pids(state)
    bin_dir = Path(state.bin_dir)
    for name in reversed(list(alive)):  # newest first, one at a time, like ControlPlane.stop
        pid = alive[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _pid_runs_binary(pid, bin_dir):
            time.sleep(0.05)
        if _pid_runs_binary(pid, bin_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return list(alive)
