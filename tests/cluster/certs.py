"""Locally generated PKI for the test control plane (openssl CLI, EC P-256 keys: fast to generate).

Produces a CA, the apiserver serving certificate, a cluster-admin client certificate
(O=system:masters) and the service-account token signing key pair.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVING_SANS = (
    "IP:127.0.0.1",
    "IP:10.96.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("the openssl command is required to make the test cluster's certificates")
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        str(path),
        cwd=path.parent,
    )
    path.chmod(0o600)


def _signed_cert(
    directory: Path, name: str, subject: str, ca: tuple[Path, Path], extensions: list[str]
) -> tuple[Path, Path]:
    key, csr, cert, ext = (directory / f"{name}{sfx}" for sfx in (".key", ".csr", ".crt", ".ext"))
    _ec_key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=directory)
    ext.write_text("\n".join(extensions) + "\n")
    ca_cert, ca_key = ca
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    return cert, key


def make_pki(directory: Path) -> Pki:
    """Create every key and certificate in ``directory`` (overwriting what is there)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    _ec_key(ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=quantbench-test-ca", "-days", "30",
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", "-out", str(ca_cert),
        cwd=directory,
    )  # fmt: skip
    ca = (ca_cert, ca_key)
    serving_cert, serving_key = _signed_cert(
        directory,
        "apiserver",
        "/CN=kube-apiserver",
        ca,
        [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=" + ",".join(SERVING_SANS),
        ],
    )
    admin_cert, admin_key = _signed_cert(
        directory,
        "admin",
        "/O=system:masters/CN=kubernetes-admin",
        ca,
        ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth"],
    )
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _ec_key(sa_key)
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub), cwd=directory)
    return Pki(ca_cert, ca_key, serving_cert, serving_key, admin_cert, admin_key, sa_key, sa_pub)


@dataclass(frozen=True)
class NodePki:
    """Certificates of the real node (tests/cluster/node), signed by the control plane's CA."""

    kubelet_client: tuple[Path, Path]  # system:node:<name> in system:nodes (the Node authorizer)
    kubelet_serving: tuple[Path, Path]  # the kubelet's HTTPS endpoint, for the node's InternalIP
    kube_proxy_client: tuple[Path, Path]  # system:kube-proxy (bound to system:node-proxier)
    coredns_client: tuple[Path, Path]  # a user the node's RBAC binds to the DNS role


COREDNS_USER = "quantbench:coredns"


def make_node_pki(pki: Pki, directory: Path, node_name: str, node_ip: str) -> NodePki:
    """Client and serving certificates for the node's kubelet, kube-proxy and CoreDNS."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = (pki.ca_cert, pki.ca_key)
    client = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature",
        "extendedKeyUsage=clientAuth",
    ]
    return NodePki(
        kubelet_client=_signed_cert(
            directory, "kubelet-client", f"/O=system:nodes/CN=system:node:{node_name}", ca, client
        ),
        kubelet_serving=_signed_cert(
            directory,
            "kubelet-serving",
            f"/CN={node_name}",
            ca,
            [
                "basicConstraints=CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                f"subjectAltName=IP:{node_ip},DNS:{node_name}",
            ],
        ),
        kube_proxy_client=_signed_cert(directory, "kube-proxy", "/CN=system:kube-proxy", ca, client),
        coredns_client=_signed_cert(directory, "coredns", f"/CN={COREDNS_USER}", ca, client),
    )


def load_pki(directory: Path) -> Pki:
    """The PKI that :func:`make_pki` wrote to ``directory`` (for a control plane started elsewhere)."""
    names = (
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "apiserver.key",
        "admin.crt",
        "admin.key",
        "sa.key",
        "sa.pub",
    )
    paths = [directory / n for n in names]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}: not a test control plane's PKI")
    return Pki(*paths)
