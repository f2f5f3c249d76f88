"""Simulated node pools (pools.yaml) and the kwok Node objects built from them.

The YAML file is the single source of truth; the operator tests read it through :func:`load_pools` to
know which pools, GPU products and capacities exist on the test control plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

POOLS_FILE = Path(__file__).with_name("pools.yaml")

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Taint(_Model):
    key: str
    value: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodePool(_Model):
    """One pool of identical nodes."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    nodes: int = Field(ge=1, le=64)
    instance_type: str = Field(alias="instanceType")
    cpu: str
    memory: str
    gpus: int = Field(ge=0)
    gpu_product: str | None = Field(default=None, alias="gpuProduct")
    gpu_memory_mib: int | None = Field(default=None, alias="gpuMemoryMiB", ge=1)
    gpu_family: str | None = Field(default=None, alias="gpuFamily")
    zone: str

    @model_validator(mode="after")
    def _gpu_fields_match(self) -> NodePool:
        has_gpu_info = self.gpu_product is not None and self.gpu_memory_mib is not None
        if self.gpus > 0 and not has_gpu_info:
            raise ValueError(f"pool {self.name!r}: gpus > 0 needs gpuProduct and gpuMemoryMiB")
        if self.gpus == 0 and (self.gpu_product or self.gpu_memory_mib or self.gpu_family):
            raise ValueError(f"pool {self.name!r}: gpuProduct/gpuMemoryMiB/gpuFamily need gpus > 0")
        return self

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.nodes)]


class PoolSet(_Model):
    """The whole pools.yaml file."""

    gpu_resource: str = Field(alias="gpuResource")
    pool_label: str = Field(alias="poolLabel")
    gpu_taint: Taint = Field(alias="gpuTaint")
    pools: list[NodePool] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PoolSet:
        names = [p.name for p in self.pools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate pool names: {', '.join(duplicates)}")
        return self

    def pool(self, name: str) -> NodePool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(f"no node pool {name!r}; pools are: {', '.join(p.name for p in self.pools)}")

    def node_count(self) -> int:
        return sum(p.nodes for p in self.pools)

    def max_gpus_per_node(self) -> int:
        return max(p.gpus for p in self.pools)


def load_pools(path: Path = POOLS_FILE) -> PoolSet:
    """Read and validate the pool definitions."""
    data = yaml.safe_load(path.read_text())
    return PoolSet.model_validate(data)


def node_labels(pools: PoolSet, pool: NodePool, node_name: str) -> dict[str, str]:
    labels = {
        "type": "kwok",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": node_name,
        "node.kubernetes.io/instance-type": pool.instance_type,
        "topology.kubernetes.io/zone": pool.zone,
        pools.pool_label: pool.name,
    }
    if pool.gpus > 0:
        assert pool.gpu_product is not None and pool.gpu_memory_mib is not None
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": pool.gpu_product,
            "nvidia.com/gpu.count": str(pool.gpus),
            "nvidia.com/gpu.memory": str(pool.gpu_memory_mib),
        }
        if pool.gpu_family:
            labels["nvidia.com/gpu.family"] = pool.gpu_family
    return labels


def build_node(pools: PoolSet, pool: NodePool, node_name: str) -> dict[str, Any]:
    """A kwok-managed Node manifest for one node of ``pool`` (pure)."""
    resources = {"cpu": pool.cpu, "memory": pool.memory, "pods": "110", "ephemeral-storage": "1Ti"}
    if pool.gpus > 0:
        resources[pools.gpu_resource] = str(pool.gpus)
    spec: dict[str, Any] = {}
    if pool.gpus > 0:
        spec["taints"] = [pools.gpu_taint.model_dump()]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": node_labels(pools, pool, node_name),
            "annotations": {
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": spec,
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def build_nodes(pools: PoolSet) -> list[dict[str, Any]]:
    return [build_node(pools, pool, name) for pool in pools.pools for name in pool.node_names()]
