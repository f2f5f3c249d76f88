"""The chart installed on the real node as a user installs it: `helm install` into its own namespace, the
operator pinned to the node's pool, removed with `helm uninstall` and the namespace afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cluster.kube import Cluster
from tests.cluster.node.node import POOL, POOL_LABEL

CHART = Path(__file__).resolve().parents[2] / "charts" / "quantbench"
RELEASE = "qb"
HELM_POOL_KEY = POOL_LABEL.replace(".", "\\.")  # a --set path: the label's dots escaped


def run(cluster: Cluster, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
    """A command (kubectl, helm) against the test cluster; its stdout, or an assertion with its stderr."""
    proc = subprocess.run(
        list(args), env=cluster.env(), input=stdin, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


@contextmanager
def installed_chart(cluster: Cluster, namespace: str, *helm_args: str) -> Iterator[str]:
    """`helm install` the chart into a new namespace (prefix ``namespace``) with the operator on the real
    node's pool and the images as loaded (pull policy Never), plus ``helm_args``; yields the namespace."""
    release_ns = cluster.create_namespace(namespace)
    try:
        run(
            cluster, "helm", "install", RELEASE, str(CHART), "--namespace", release_ns,
            "--set", "image.pullPolicy=Never", "--set-string", f"nodeSelector.{HELM_POOL_KEY}={POOL}",
            *helm_args, "--wait", "--timeout", "180s",
        )  # fmt: skip
        yield release_ns
    finally:
        subprocess.run(
            ["helm", "uninstall", RELEASE, "--namespace", release_ns, "--wait", "--timeout", "60s"],
            env=cluster.env(), capture_output=True, timeout=90, check=False,
        )  # fmt: skip
        cluster.delete_namespace(release_ns)
