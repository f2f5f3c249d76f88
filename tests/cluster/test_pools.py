"""The node-pool definitions and the kwok Node manifests built from them (no cluster needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.cluster.pools import KWOK_NODE_ANNOTATION, PoolSet, build_nodes, load_pools


def test_pools_file_defines_the_expected_pools() -> None:
    pools = load_pools()
    assert [p.name for p in pools.pools] == ["h100", "h200", "a100", "l40s", "cpu"]
    h100 = pools.pool("h100")
    assert (h100.nodes, h100.gpus, h100.gpu_product) == (2, 8, "NVIDIA-H100-80GB-HBM3")
    assert pools.pool("cpu").gpus == 0


def test_h100_node_manifest_looks_like_a_cloud_gpu_node() -> None:
    pools = load_pools()
    nodes = {n["metadata"]["name"]: n for n in build_nodes(pools)}
    assert len(nodes) == pools.node_count()
    node = nodes["h100-1"]
    labels = node["metadata"]["labels"]
    assert labels["quantbench.dev/pool"] == "h100"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["node.kubernetes.io/instance-type"] == "p5.48xlarge"
    assert node["metadata"]["annotations"][KWOK_NODE_ANNOTATION] == "fake"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"


def test_cpu_node_has_no_gpu_resource_labels_or_taints() -> None:
    node = next(n for n in build_nodes(load_pools()) if n["metadata"]["name"] == "cpu-0")
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert "taints" not in node["spec"]
    assert not any(k.startswith("nvidia.com/") for k in node["metadata"]["labels"])


def test_unknown_pool_error_lists_the_pools() -> None:
    with pytest.raises(KeyError, match="h100, h200"):
        load_pools().pool("b200")


def _raw(**pool: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "x",
        "nodes": 1,
        "instanceType": "t",
        "cpu": "1",
        "memory": "1Gi",
        "zone": "z",
    }
    return {
        "gpuResource": "nvidia.com/gpu",
        "poolLabel": "quantbench.dev/pool",
        "gpuTaint": {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        "pools": [base | pool],
    }


def test_gpu_pool_without_product_is_rejected() -> None:
    with pytest.raises(ValidationError, match="gpus > 0 needs gpuProduct"):
        PoolSet.model_validate(_raw(gpus=8))


def test_duplicate_pool_names_are_rejected() -> None:
    raw = _raw(gpus=0)
    raw["pools"] = [*raw["pools"], *raw["pools"]]  # type: ignore[misc]
    with pytest.raises(ValidationError, match="duplicate pool names: x"):
        PoolSet.model_validate(raw)
