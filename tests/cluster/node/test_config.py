"""The real node's pure parts: what the egress proxy lets through, the OCI archives it writes, and the
configuration it gives its components."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
from pathlib import Path

import pytest

from tests.cluster.controlplane import egress_selector_config
from tests.cluster.node.netbridge import parse_connect
from tests.cluster.node.node import (
    CLUSTER_CIDR,
    DNS_SERVICE_IP,
    KUBELET_KERNEL_SETTINGS,
    NODE_IP,
    SERVICE_CIDR,
    cluster_objects,
    corefile,
    holder_script,
    kubelet_config,
)
from tests.cluster.node.oci import image_archive

ALLOWED = [ipaddress.IPv4Network(n) for n in (f"{NODE_IP}/32", CLUSTER_CIDR, SERVICE_CIDR)]


@pytest.mark.parametrize(
    ("request_line", "target"),
    [
        (f"CONNECT {NODE_IP}:10250 HTTP/1.1", (NODE_IP, 10250)),
        ("CONNECT 10.244.0.7:8000 HTTP/1.1", ("10.244.0.7", 8000)),
        ("CONNECT 10.96.3.4:443 HTTP/1.1", ("10.96.3.4", 443)),
    ],
)
def test_egress_proxy_dials_addresses_of_the_node_namespace(
    request_line: str, target: tuple[str, int]
) -> None:
    assert parse_connect(request_line.encode() + b"\r\nHost: x\r\n\r\n", ALLOWED) == target


@pytest.mark.parametrize(
    ("request_line", "reason"),
    [
        ("CONNECT 10.0.0.1:10250 HTTP/1.1", "not an address of the node"),
        ("CONNECT 127.0.0.1:2379 HTTP/1.1", "not an address of the node"),
        ("CONNECT cpu-real-0:10250 HTTP/1.1", "not an IP address"),
        ("CONNECT 10.244.0.7 HTTP/1.1", "no port"),
        ("GET / HTTP/1.1", "not a CONNECT request"),
    ],
)
def test_egress_proxy_refuses_everything_else(request_line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_connect(request_line.encode() + b"\r\n\r\n", ALLOWED)


def test_apiserver_sends_cluster_traffic_through_the_unix_socket() -> None:
    config = egress_selector_config(Path("/w/egress.sock"))
    [selection] = config["egressSelections"]
    assert selection["name"] == "cluster"
    assert selection["connection"] == {
        "proxyProtocol": "HTTPConnect",
        "transport": {"uds": {"udsName": "/w/egress.sock"}},
    }


def test_image_archive_is_an_oci_layout_ctr_can_tag() -> None:
    archive = image_archive("quantbench.test/x:2", {"/bin/prog": (b"\x7fELF...", 0o755)}, ["/bin/prog"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "quantbench.test/x:2"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/bin/prog"]
    layer = files[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"]
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        prog = tar.getmember("bin/prog")
    assert prog.mode == 0o755
    assert (
        image_archive("quantbench.test/x:2", {"/bin/prog": (b"\x7fELF...", 0o755)}, ["/bin/prog"]) == archive
    )


def test_pods_reach_the_apiserver_and_dns_at_the_node_ip() -> None:
    slices = {o["metadata"]["name"]: o for o in cluster_objects(41234) if o["kind"] == "EndpointSlice"}
    kubernetes = slices["kubernetes"]
    assert kubernetes["endpoints"][0]["addresses"] == [NODE_IP]
    assert kubernetes["ports"] == [{"name": "https", "port": 41234, "protocol": "TCP"}]
    assert slices["kube-dns-node"]["endpoints"][0]["addresses"] == [NODE_IP]
    dns = next(o for o in cluster_objects(1) if o["kind"] == "Service")
    assert dns["spec"]["clusterIP"] == DNS_SERVICE_IP


def test_dns_answers_cluster_names_only() -> None:
    conf = corefile(Path("/k"))
    assert "kubernetes cluster.local" in conf
    assert "forward" not in conf


def test_kubelet_keeps_its_pods_and_settings_to_the_node() -> None:
    config = kubelet_config(
        ca_cert=Path("/ca"), serving=(Path("/c"), Path("/k")), runtime_socket=Path("/s"),
        cgroup_root="/quantbench-node-x/pods", pod_logs=Path("/l"),
    )  # fmt: skip
    assert config["failCgroupV1"] is False
    assert config["cgroupsPerQOS"] is True and config["cgroupRoot"] == "/quantbench-node-x/pods"
    assert config["resolvConf"] == ""  # pods never get the host's resolvers
    script = holder_script(Path("/r"), Path("/s"))
    for key in KUBELET_KERNEL_SETTINGS:
        assert f"/proc/sys/{key}" in script
