"""Fixtures for the operator's integration tests (marker `cluster`): the CRD and the operator's RBAC installed
once per session, an operator process factory, and a QuantBenchmark handle per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quantbench.kube import Kube
from tests.cluster.kube import Cluster
from tests.operator.harness import Bench, OperatorProcess, install_crd, install_operator_rbac


@pytest.fixture(scope="session")
def kube_admin(cluster: Cluster) -> Iterator[Kube]:
    api = cluster.api_client()
    kube = Kube(api)
    install_crd(kube)
    install_operator_rbac(kube)
    yield kube
    api.close()


@pytest.fixture(scope="session")
def ca_file(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_bytes(cluster.ca_pem)
    return path


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(cluster: Cluster, kube_admin: Kube, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start `quantbench operator` for the given namespaces (None: all); every process is stopped afterwards."""
    started: list[OperatorProcess] = []

    def start(
        namespaces: list[str] | None, env: dict[str, str] | None = None, account: str | None = None
    ) -> OperatorProcess:
        op = OperatorProcess(cluster, namespaces, tmp_path, env, **({"account": account} if account else {}))
        op.start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
        print(f"--- operator log ({op.log_dir}) ---\n{op.logs()[-6000:]}")  # shown when the test fails


def release(kube: Kube, namespace: str) -> None:
    """Drop the operator's finalizer from every QuantBenchmark left in the namespace (the operator may be
    stopped already), so that the namespace can be deleted."""
    for body in kube.list("QuantBenchmark", namespace):
        name = body["metadata"]["name"]
        kube.merge_patch("QuantBenchmark", namespace, name, {"metadata": {"finalizers": None}})
        kube.delete("QuantBenchmark", namespace, name)


@pytest.fixture
def bench(cluster: Cluster, kube_admin: Kube, cluster_namespace: str, ca_file: Path) -> Iterator[Bench]:
    yield Bench(cluster, kube_admin, cluster_namespace, "llama", ca_file)
    release(kube_admin, cluster_namespace)
