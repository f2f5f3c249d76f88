"""A real node beside the kwok pools: kubelet, kube-proxy and CoreDNS (built from Go modules by
tests/cluster/build.sh), Debian's containerd, runc and CNI plugins, on the test control plane.

Everything the node does stays on this machine and is removed by :func:`cleanup`:

* network: one network namespace (``qbnode-<id>``) holds the node IP (on its loopback), the CNI bridge,
  every pod, kube-proxy's iptables rules and CoreDNS. It has no route out; the host's namespace gets no
  address, route or rule. The only way in or out is :mod:`tests.cluster.node.netbridge` (apiserver ->
  node through the apiserver's egress proxy, node and pods -> apiserver through a forwarded port);
* mounts: containerd, the kubelet and their containers share one private mount namespace, which also
  hides /run/containerd and /var/lib/cni behind empty tmpfs and answers the kubelet's reads of the kernel
  settings it would otherwise change host-wide (vm.overcommit_memory, kernel.panic, ...); when its last
  process exits every container mount goes with it;
* processes: every one of them (daemons, shims, containers) runs in cgroup ``quantbench-node-<id>``;
  killing what is in it stops the node;
* files: everything else is under ``<control-plane workdir>/node``.

Needs root and a cgroup v1 (or hybrid) layout; the Debian packages come from tests/cluster/node/setup.sh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from pydantic import BaseModel

from tests.cluster.certs import COREDNS_USER, load_pki, make_node_pki
from tests.cluster.controlplane import EGRESS_SOCKET, kubeconfig_dict, wait_until_ready
from tests.cluster.node.netbridge import NetNamespaces
from tests.cluster.node.oci import image_archive

NODE_DIR = Path(__file__).resolve().parent
REPO_ROOT = NODE_DIR.parents[2]
PROGRAMS_DIR = NODE_DIR / "programs"

NODE_NAME = "cpu-real-0"
POOL = "cpu-real"
POOL_LABEL = "quantbench.dev/pool"
NODE_IP = "10.250.0.1"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"  # the apiserver's --service-cluster-ip-range
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
KUBELET_PORT = 10250
KUBE_PROXY_HEALTH_PORT = 10256
COREDNS_READY_PORT = 8181
PAUSE_IMAGE = "quantbench.test/pause:1"
TOOLBOX_IMAGE = "quantbench.test/toolbox:1"
CONTAINERD_NAMESPACE = "k8s.io"
CNI_BIN_DIR = Path("/usr/lib/cni")
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns")
HOST_COMMANDS = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "iptables",
    "ip",
    "nsenter",
    "unshare",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
# What the kubelet would write host-wide when these differ (kubelet: setupKernelTunables); the node's
# mount namespace shows it these values instead.
KUBELET_KERNEL_SETTINGS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
}
SETUP_HINT = "install them with `make node-setup` (bash tests/cluster/node/setup.sh)"


class NodeError(RuntimeError):
    """The real node did not start; the message names the part and quotes its log."""


class NodeState(BaseModel):
    """What a started node leaves in ``<workdir>/state.json`` for :func:`cleanup`."""

    node_id: str
    node_name: str
    workdir: str
    netns: str
    cgroup: str
    containerd_socket: str
    pids: dict[str, int] = {}
    ready_seconds: float = 0.0
    ready_after_seconds: dict[str, float] = {}


# ------------------------------------------------------------------------------------- pure configs
def containerd_config(root: Path, state: Path, socket_path: Path, cni_conf_dir: Path) -> str:
    """containerd's configuration (TOML, version 2): private root, state and socket; the CRI plugin with
    the local pause image, runc through cgroupfs, the Debian CNI plugins, no registry mirrors."""
    return f"""version = 2
root = {json.dumps(str(root))}
state = {json.dumps(str(state))}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = {json.dumps(str(socket_path))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {json.dumps(str(CNI_BIN_DIR))}
    conf_dir = {json.dumps(str(cni_conf_dir))}
"""


def cni_config(ipam_dir: Path) -> dict[str, Any]:
    """The pod network (pure): a bridge whose gateway is the node's namespace, host-local addresses from
    POD_CIDR, no IP masquerade (nothing leaves), hairpin for a pod reaching itself through a Service."""
    return {
        "cniVersion": "0.4.0",
        "name": "quantbench",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    *, ca_cert: Path, serving: tuple[Path, Path], runtime_socket: Path, cgroup_root: str, pod_logs: Path
) -> dict[str, Any]:
    """KubeletConfiguration for this machine (pure): cgroup v1 through cgroupfs, the pod and QoS
    cgroups under ``cgroup_root`` (so every container is in the node's cgroup), x509
    + webhook authentication and authorization (the apiserver comes with the admin certificate), cluster
    DNS through the kube-dns Service, no host resolver for pods."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": True,
        "cgroupRoot": cgroup_root,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "address": "0.0.0.0",  # inside the node's network namespace
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "",
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "podLogsDir": str(pod_logs),
        "serializeImagePulls": False,
        "registerNode": True,
        "maxPods": 110,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusReportFrequency": "10s",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
    }


def kube_proxy_config(kubeconfig: Path) -> dict[str, Any]:
    """KubeProxyConfiguration (pure): iptables mode, leaving the (host-wide) conntrack settings alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": CLUSTER_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": f"127.0.0.1:{KUBE_PROXY_HEALTH_PORT}",
        "metricsBindAddress": "127.0.0.1:10249",
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
    }


def corefile(kubeconfig: Path) -> str:
    """CoreDNS configuration (pure): Service and pod names of the cluster domain from the apiserver; no
    forwarding, so a name outside the cluster is not resolved (nothing leaves the machine)."""
    return f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:{COREDNS_READY_PORT}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    loadbalance
}}
"""


def client_kubeconfig(server: str, ca_cert: Path, cert: tuple[Path, Path]) -> dict[str, Any]:
    """A kubeconfig with a client certificate by path (pure)."""
    user = {"client-certificate": str(cert[0]), "client-key": str(cert[1])}
    return kubeconfig_dict(server, ca_cert.read_bytes(), user)


def cluster_objects(apiserver_port: int) -> list[dict[str, Any]]:
    """API objects the node needs (pure): the ``kubernetes`` Service's endpoint (the node IP, where the
    netbridge forwards to the apiserver), the kube-dns Service and its endpoint (CoreDNS on the node IP),
    and CoreDNS's read access."""
    managed = {"endpointslice.kubernetes.io/managed-by": "quantbench-test-node"}
    return [
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "kubernetes", **managed},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": apiserver_port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {
                "clusterIP": DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-node",
                "namespace": "kube-system",
                "labels": {"kubernetes.io/service-name": "kube-dns", **managed},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "quantbench:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "quantbench:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "quantbench:coredns",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": COREDNS_USER}],
        },
    ]


def holder_script(ready_file: Path, sysctl_dir: Path) -> str:
    """Shell run in the node's new mount namespace before it idles as the namespace's holder (pure)."""
    lines = [
        "set -eu",
        "mkdir -p /run/containerd /var/lib/cni",
        "mount -t tmpfs -o mode=0711 quantbench-node /run/containerd",
        "mount -t tmpfs -o mode=0755 quantbench-node /var/lib/cni",
    ]
    for key in KUBELET_KERNEL_SETTINGS:
        lines.append(f"mount --bind {sysctl_dir / key.replace('/', '.')} /proc/sys/{key}")
    lines += [f"echo ready > {ready_file}", "exec sleep infinity"]
    return "\n".join(lines)


def source_digest(directory: Path) -> str:
    """A digest of every file under ``directory`` (pure but for reading them)."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ host checks
def check_host(bin_dir: Path) -> None:
    """Root, cgroup v1 controllers, the node binaries and the Debian packages; NodeError naming what lacks."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the real node needs root (network and mount namespaces, cgroups)")
    if not (CGROUP_ROOT / "memory" / "cgroup.procs").exists():
        problems.append(
            f"no cgroup v1 memory controller under {CGROUP_ROOT} (the node uses the v1/hybrid layout)"
        )
    missing_bin = [b for b in NODE_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing_bin:
        problems.append(f"missing {', '.join(missing_bin)} in {bin_dir}: build them with `make cluster-bin`")
    missing_cmd = [c for c in HOST_COMMANDS if shutil.which(c) is None]
    missing_cmd += [f"{CNI_BIN_DIR}/{p}" for p in ("bridge", "host-local", "portmap", "loopback")
                    if not (CNI_BIN_DIR / p).exists()]  # fmt: skip
    if missing_cmd:
        problems.append(f"missing {', '.join(missing_cmd)}: {SETUP_HINT}")
    if shutil.which("go") is None:
        problems.append("Go is needed to build the node's pause and toolbox programs")
    if problems:
        raise NodeError("; ".join(problems))


def build_programs(cache_root: Path) -> Path:
    """Build pause and toolbox (static, stdlib only) once per source version; returns their folder."""
    out = cache_root / source_digest(PROGRAMS_DIR)
    if all((out / p).exists() for p in ("pause", "toolbox")):
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    proc = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", f"{tmp}/", "./pause", "./toolbox"],
        cwd=PROGRAMS_DIR, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise NodeError(f"building the node's pause and toolbox programs failed:\n{proc.stderr}")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# --------------------------------------------------------------------------------------- cgroups
def _controllers(unified: bool = False) -> list[Path]:
    """The cgroup v1 hierarchies (one folder per mounted controller, named or not); with ``unified``, also
    the v2 hierarchy of a hybrid layout (runc makes the containers' folders there too)."""
    return sorted(
        p
        for p in CGROUP_ROOT.iterdir()
        if p.is_dir() and (p / "cgroup.procs").exists() and (unified or p.name != "unified")
    )


def _make_cgroup(rel: str) -> None:
    for ctrl in _controllers():
        path = ctrl / rel
        parts = Path(rel).parts
        for i in range(1, len(parts) + 1):
            p = ctrl.joinpath(*parts[:i])
            if not p.exists():
                p.mkdir()
            if ctrl.name == "cpuset":  # a cpuset cgroup takes no task until it has CPUs and memory nodes
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if not (p / knob).read_text().strip():
                        (p / knob).write_text((p.parent / knob).read_text())
        assert path.exists()


def _join_cgroup(rel: str) -> Callable[[], None]:
    """A preexec function that moves the child into ``rel`` in every v1 hierarchy."""
    files = [str(ctrl / rel / "cgroup.procs") for ctrl in _controllers()]

    def join() -> None:
        pid = str(os.getpid())
        for f in files:
            with open(f, "w") as fh:
                fh.write(pid)

    return join


def cgroup_pids(cgroup: str) -> set[int]:
    """Every process in ``cgroup`` and below (any hierarchy)."""
    pids: set[int] = set()
    for ctrl in _controllers(unified=True):
        top = ctrl / cgroup
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids |= {int(x) for x in procs.read_text().split()}
    return pids


def memory_peak_mib(cgroup: str) -> float | None:
    """The highest memory use of everything in ``cgroup`` so far (v1 ``memory.max_usage_in_bytes``:
    processes and the page cache they caused), in MiB; None without that file."""
    path = CGROUP_ROOT / "memory" / cgroup / "memory.max_usage_in_bytes"
    try:
        return int(path.read_text()) / 2**20
    except (OSError, ValueError):
        return None


def memory_in_use_mib(cgroup: str) -> float | None:
    """What the processes in ``cgroup`` hold now, in MiB: anonymous memory and mapped files (v1
    ``memory.stat`` total_rss + total_mapped_file), without the page cache that reading images leaves;
    None without that file."""
    path = CGROUP_ROOT / "memory" / cgroup / "memory.stat"
    try:
        stat = dict(line.split() for line in path.read_text().splitlines())
        return (int(stat["total_rss"]) + int(stat["total_mapped_file"])) / 2**20
    except (OSError, ValueError, KeyError):
        return None


class MemoryPeak:
    """The highest memory in use by the processes in ``cgroup`` (the node: containerd, kubelet, pods), sampled
    every second while the block runs: the machine's cost, without the page cache that reading images leaves."""

    def __init__(self, cgroup: str) -> None:
        self.cgroup, self.peak_mib = cgroup, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.peak_mib = max(self.peak_mib, memory_in_use_mib(self.cgroup) or 0.0)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _remove_cgroup(cgroup: str) -> None:
    for ctrl in _controllers(unified=True):
        top = ctrl / cgroup
        if not top.exists():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


# --------------------------------------------------------------------------------------- cleanup
def cleanup(state: NodeState, grace: float = 5.0) -> None:
    """Stop everything a node started and remove what it made: processes (by cgroup), cgroups, the
    network namespace (with the bridge, iptables rules and pod addresses in it), its files."""
    pids = cgroup_pids(state.cgroup) | set(state.pids.values())
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        alive = {p for p in pids if Path(f"/proc/{p}").exists()}
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = cgroup_pids(state.cgroup)
            if not pids:
                break
            time.sleep(0.1)
        if not pids:
            break
    for _ in range(50):
        _remove_cgroup(state.cgroup)
        if not any((c / state.cgroup).exists() for c in _controllers(unified=True)):
            break
        time.sleep(0.1)
    if Path(f"/run/netns/{state.netns}").exists():
        subprocess.run(["ip", "netns", "delete", state.netns], capture_output=True, check=False)
    workdir = Path(state.workdir)
    (workdir.parent / EGRESS_SOCKET).unlink(missing_ok=True)
    for sub in ("containerd", "kubelet", "ipam", "pod-logs", "images"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    (workdir / "state.json").unlink(missing_ok=True)


def read_node_state(workdir: Path) -> NodeState | None:
    path = workdir / "state.json"
    if not path.exists():
        return None
    return NodeState.model_validate(json.loads(path.read_text()))


# ------------------------------------------------------------------------------------------ node


def _set_pdeathsig() -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class RealNode:
    """One real node on the control plane whose work directory is ``cluster_workdir``."""

    cluster_workdir: Path
    server: str
    bin_dir: Path
    detach: bool = False
    start_timeout: float = 120.0
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    ready_after: dict[str, float] = field(default_factory=dict, init=False)
    state: NodeState | None = field(default=None, init=False)
    _logs: list[IO[bytes]] = field(default_factory=list, init=False)
    _t0: float = field(default=0.0, init=False)

    @property
    def workdir(self) -> Path:
        return self.cluster_workdir / "node"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def netns(self) -> str:
        return f"qbnode-{self.node_id}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def cgroup(self) -> str:
        return f"quantbench-node-{self.node_id}"

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def apiserver_port(self) -> int:
        return int(self.server.rsplit(":", 1)[1])

    # --------------------------------------------------------------------------------- start
    def start(self) -> NodeState:
        check_host(self.bin_dir)
        previous = read_node_state(self.workdir)
        if previous is not None:
            cleanup(previous)
        self._t0 = time.monotonic()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.log_dir.mkdir(parents=True)
        self.state = NodeState(
            node_id=self.node_id,
            node_name=NODE_NAME,
            workdir=str(self.workdir),
            netns=self.netns,
            cgroup=self.cgroup,
            containerd_socket=str(self.containerd_socket),
        )
        self._save_state()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.state.ready_seconds = round(time.monotonic() - self._t0, 2)
        self.state.ready_after_seconds = {k: round(v, 2) for k, v in self.ready_after.items()}
        self._save_state()
        return self.state

    def _save_state(self) -> None:
        assert self.state is not None
        self.state.pids = {name: p.pid for name, p in self.processes.items()}
        (self.workdir / "state.json").write_text(self.state.model_dump_json(indent=2))

    def _mark(self, name: str) -> None:
        self.ready_after[name] = time.monotonic() - self._t0

    def _start(self) -> None:
        w = self.workdir
        pki = load_pki(self.cluster_workdir / "pki")
        node_pki = make_node_pki(pki, w / "pki", NODE_NAME, NODE_IP)
        programs = build_programs(self.cluster_workdir.parent / "node-programs")
        self._mark("programs")

        # cgroup and network namespace
        _make_cgroup(f"{self.cgroup}/daemons")
        _make_cgroup(f"{self.cgroup}/pods")
        self._run(["ip", "netns", "add", self.netns])
        self._run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self._run(["ip", "-n", self.netns, "addr", "add", f"{NODE_IP}/32", "dev", "lo"])
        # Service addresses from the node itself (a Prometheus scraping a Service): a route for the first
        # lookup, after which kube-proxy's OUTPUT rules rewrite the destination to a pod on the bridge
        self._run(["ip", "-n", self.netns, "route", "add", SERVICE_CIDR, "dev", "lo", "src", NODE_IP])
        for key in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
            self._run(["nsenter", f"--net={self.netns_path}", "sysctl", "-q", "-w", key])

        # the mount namespace, held by an idle process
        sysctl_dir = w / "sysctl"
        sysctl_dir.mkdir()
        for key, value in KUBELET_KERNEL_SETTINGS.items():
            (sysctl_dir / key.replace("/", ".")).write_text(value + "\n")
        ready_file = w / "holder.ready"
        self._spawn(
            "holder",
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", holder_script(ready_file, sysctl_dir)],
            in_node=False, netns=True,
        )  # fmt: skip
        self._wait("holder", ready_file.exists)
        mnt_ns = f"/proc/{self.processes['holder'].pid}/ns/mnt"

        # the netbridge (host side; sockets in the node's namespace)
        egress = self.cluster_workdir / EGRESS_SOCKET
        self._spawn(
            "netbridge",
            [sys.executable, "-m", "tests.cluster.node.netbridge", f"--netns={self.netns_path}",
             f"--egress-socket={egress}", f"--forward={self.apiserver_port}",
             f"--allow={NODE_IP}/32", f"--allow={CLUSTER_CIDR}", f"--allow={SERVICE_CIDR}"],
            in_node=False,
        )  # fmt: skip
        self._wait("netbridge", egress.exists)

        # kubeconfigs (the apiserver's address is the same inside: the netbridge listens on it)
        ca = pki.ca_cert
        kubeconfigs = {}
        for name, cert in (
            ("kubelet", node_pki.kubelet_client),
            ("kube-proxy", node_pki.kube_proxy_client),
            ("coredns", node_pki.coredns_client),
        ):
            path = w / f"{name}.kubeconfig"
            path.write_text(yaml.safe_dump(client_kubeconfig(self.server, ca, cert), sort_keys=False))
            path.chmod(0o600)
            kubeconfigs[name] = path

        # containerd and the local images
        cni_dir = w / "cni"
        cni_dir.mkdir()
        (cni_dir / "10-quantbench.conflist").write_text(json.dumps(cni_config(w / "ipam"), indent=2))
        conf = w / "containerd.toml"
        conf.write_text(
            containerd_config(
                w / "containerd" / "root", w / "containerd" / "state", self.containerd_socket, cni_dir
            )
        )
        self._spawn("containerd", ["containerd", f"--config={conf}"], mnt_ns=mnt_ns)
        self._wait("containerd", self._containerd_serves)
        images = w / "images"
        images.mkdir()
        for image, program in ((PAUSE_IMAGE, "pause"), (TOOLBOX_IMAGE, "toolbox")):
            archive = images / f"{program}.tar"
            data = (programs / program).read_bytes()
            archive.write_bytes(image_archive(image, {f"/{program}": (data, 0o755)}, [f"/{program}"]))
            import_image(self.containerd_socket, archive)
        self._mark("images")

        # API objects the node's DNS and pods rely on
        apply_objects(
            self.bin_dir / "kubectl",
            self.cluster_workdir / "kubeconfig",
            cluster_objects(self.apiserver_port),
        )

        # CoreDNS, kubelet, kube-proxy
        core_conf = w / "Corefile"
        core_conf.write_text(corefile(kubeconfigs["coredns"]))
        self._spawn("coredns", [str(self.bin_dir / "coredns"), f"-conf={core_conf}"], mnt_ns=mnt_ns)
        kubelet_conf = w / "kubelet.yaml"
        kubelet_conf.write_text(
            yaml.safe_dump(
                kubelet_config(
                    ca_cert=ca,
                    serving=node_pki.kubelet_serving,
                    runtime_socket=self.containerd_socket,
                    cgroup_root=f"/{self.cgroup}/pods",
                    pod_logs=w / "pod-logs",
                )
            )
        )
        labels = {
            POOL_LABEL: POOL,
            "node.kubernetes.io/instance-type": "real-cpu",
            "topology.kubernetes.io/zone": "local",
            "quantbench.dev/real-node": "true",
        }
        self._spawn(
            "kubelet",
            [str(self.bin_dir / "kubelet"), f"--config={kubelet_conf}", f"--kubeconfig={kubeconfigs['kubelet']}",
             f"--root-dir={w / 'kubelet'}", f"--cert-dir={w / 'kubelet-pki'}", f"--node-ip={NODE_IP}",
             f"--hostname-override={NODE_NAME}", "--node-labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
             "--v=1"],
            mnt_ns=mnt_ns,
        )  # fmt: skip
        kube_proxy_conf = w / "kube-proxy.yaml"
        kube_proxy_conf.write_text(yaml.safe_dump(kube_proxy_config(kubeconfigs["kube-proxy"])))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={kube_proxy_conf}", "--v=1"],
                    mnt_ns=mnt_ns)  # fmt: skip
        self._save_state()

        ns = NetNamespaces(self.netns_path)
        api = k8s_config.new_client_from_config(config_file=str(self.cluster_workdir / "kubeconfig"))
        with api:
            core = k8s.CoreV1Api(api)
            self._wait("kubelet", lambda: node_ready(core, NODE_NAME))
        try:
            self._wait(
                "kube-proxy", lambda: node_http_ok(ns, "127.0.0.1", KUBE_PROXY_HEALTH_PORT, "/healthz")
            )
            self._wait("coredns", lambda: node_http_ok(ns, "127.0.0.1", COREDNS_READY_PORT, "/ready"))
        finally:
            ns.close()

    def _containerd_serves(self) -> bool:
        if not self.containerd_socket.exists():
            return False
        proc = subprocess.run(
            ["ctr", f"--address={self.containerd_socket}", "version"], capture_output=True, check=False
        )
        return proc.returncode == 0

    def _run(self, args: list[str]) -> None:
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise NodeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")

    def _spawn(
        self,
        name: str,
        args: list[str],
        *,
        in_node: bool = True,
        netns: bool = False,
        mnt_ns: str | None = None,
    ) -> None:
        """Start ``args`` in the node's cgroup; in its network namespace (``in_node`` or ``netns``) and
        mount namespace (``mnt_ns``) through nsenter."""
        if in_node or netns:
            enter = ["nsenter", f"--net={self.netns_path}"]
            if mnt_ns is not None:
                enter.append(f"--mount={mnt_ns}")
            args = [*enter, "--", *args]
        log = (self.log_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        join = _join_cgroup(f"{self.cgroup}/daemons")

        def preexec() -> None:
            join()
            if not self.detach:
                _set_pdeathsig()

        self.processes[name] = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=dict(os.environ, HOME=str(self.workdir)),
            start_new_session=True,
            preexec_fn=preexec,
        )
        self._save_state()

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        wait_until_ready(
            name,
            ready,
            self.processes,
            self.log_dir,
            self.start_timeout,
            NodeError,
            (OSError, ApiException),
            poll_s=0.2,
        )
        self._mark(name)

    # ---------------------------------------------------------------------------------- stop
    def stop(self) -> None:
        if self.state is not None:
            self._save_state()
            cleanup(self.state)
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


# ------------------------------------------------------------------------------------- helpers
def import_image(containerd_socket: Path, archive: Path) -> None:
    """Import an OCI or docker archive into the node's containerd (the CRI's ``k8s.io`` namespace)."""
    proc = subprocess.run(
        ["ctr", f"--address={containerd_socket}", "-n", CONTAINERD_NAMESPACE, "images", "import", str(archive)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise NodeError(f"ctr images import {archive} failed: {proc.stderr.strip()}")


def apply_objects(kubectl: Path, kubeconfig: Path, objects: list[dict[str, Any]]) -> None:
    """Server-side apply ``objects`` (idempotent: a node started again on the same control plane)."""
    proc = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", "apply", "--server-side", "--force-conflicts",
         "--field-manager=quantbench-test-node", "-f", "-"],
        input=yaml.safe_dump_all(objects), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise NodeError(f"kubectl apply of the node's API objects failed: {proc.stderr.strip()}")


def node_ready(core: k8s.CoreV1Api, name: str) -> bool:
    try:
        node = core.read_node(name)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    conditions = (node.status and node.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def node_http_ok(ns: NetNamespaces, host: str, port: int, path: str) -> bool:
    """GET http://host:port/path from inside the node's network namespace; True on HTTP 200."""
    with ns.node():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2)
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        head = sock.recv(64)
    return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))


def node_command(state: NodeState, args: list[str]) -> list[str]:
    """``args`` run in the node's network namespace (e.g. a Prometheus that scrapes pods and Services)."""
    return ["nsenter", f"--net=/run/netns/{state.netns}", "--", *args]


@contextlib.contextmanager
def in_node_network(state: NodeState) -> Iterator[None]:
    """Run this thread in the node's network namespace for the block: sockets made inside it reach pod and
    Service addresses (and keep doing so after the block)."""
    ns = NetNamespaces(Path(f"/run/netns/{state.netns}"))
    try:
        with ns.node():
            yield
    finally:
        ns.close()
