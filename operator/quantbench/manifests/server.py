"""The vLLM server of one variant: a Deployment and a Service, with the flags each precision needs.

A variant placed with ``gpus: 0`` runs the CPU build of vLLM (server.cpuImage, else the operator's
cpuServerImage setting): its pod requests cpu and memory instead of GPUs (requests = limits, so it is in the
Guaranteed QoS class and its measurements are not disturbed by eviction or throttling of others), and the
server gets the CPU backend's settings: KV cache size (a quarter of the memory), thread count, no core
pinning.
"""

from __future__ import annotations

import math

from quantbench.api.v1alpha1 import (
    DEFAULT_CPU_CPU,
    DEFAULT_CPU_MEMORY,
    Placement,
    Precision,
    QuantBenchmarkSpec,
    Variant,
    quantity,
)
from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.manifests.security import restricted
from quantbench.naming import STEP_SERVER, labels, server_name
from quantbench.plan import kernel_for
from quantbench.settings import DEFAULT_CPU_SERVER_IMAGE
from quantbench_loadgen.schema import duration_seconds

CONTAINER = "vllm"
PORT_NAME = "http"
HEALTH_PATH = "/health"
STARTUP_PERIOD_S = 10
READINESS_PERIOD_S = 5
DTYPE_FLAG: dict[str, str] = {Precision.BF16: "bfloat16", Precision.FP16: "float16"}
# The CPU backend's settings. The KV cache size is a flag (VLLM_CPU_KVCACHE_SPACE, GiB, is vLLM's legacy
# spelling and overrides the flag where set); without either, vLLM reserves --gpu-memory-utilization of the
# node's memory. OpenMP: no core binding, one thread per requested core.
KV_CACHE_FLAG = "--kv-cache-memory-bytes"
CPU_KVCACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
CPU_THREADS_ENV = "OMP_NUM_THREADS"
CPU_KVCACHE_SHARE = 0.25  # of the memory request, when neither the flag nor the variable is given


def model_of(spec: QuantBenchmarkSpec, variant: Variant) -> str:
    return variant.model or spec.model


def revision_of(spec: QuantBenchmarkSpec, variant: Variant) -> str | None:
    return variant.revision or (spec.revision if variant.model is None else None)


def cpu_requests(placement: Placement) -> tuple[str, str]:
    """(cpu, memory) of a CPU server: the placement's, else the defaults."""
    return placement.cpu or DEFAULT_CPU_CPU, placement.memory or DEFAULT_CPU_MEMORY


def cpu_kv_cache_bytes(placement: Placement) -> int:
    """A CPU server's KV cache: a quarter of its memory, in whole GiB, at least 1 GiB."""
    _, memory = cpu_requests(placement)
    return max(1, math.floor(quantity(memory) * CPU_KVCACHE_SHARE / 2**30)) * 2**30


def cpu_server_env(spec: QuantBenchmarkSpec, placement: Placement) -> list[Obj]:
    """vLLM CPU backend settings derived from the requests; a variable set in server.env wins."""
    cpu, _ = cpu_requests(placement)
    values = {
        # The container gets a CPU quota, not dedicated cores: pinning OpenMP threads to cores the node
        # shares with others would slow everyone down; one thread per requested core instead.
        CPU_BIND_ENV: "nobind",
        CPU_THREADS_ENV: str(max(1, math.floor(quantity(cpu)))),
    }
    given = {e.name for e in spec.server.env}
    return [{"name": k, "value": v} for k, v in values.items() if k not in given]


def server_image(
    spec: QuantBenchmarkSpec, variant: Variant, cpu_image: str = DEFAULT_CPU_SERVER_IMAGE
) -> str:
    """The variant's server image: its own ``image``; else server.image on GPUs, and server.cpuImage, else
    ``cpu_image``, on CPUs."""
    if variant.image is not None:
        return variant.image
    if spec.placement_for(variant).on_cpu:
        return spec.server.cpu_image or cpu_image
    return spec.server.image


def server_args(spec: QuantBenchmarkSpec, variant: Variant) -> list[str]:
    """vLLM OpenAI server arguments for the variant (the image's entrypoint runs the server). On CPUs there
    is no GPU memory share nor tensor parallel size: the KV cache size comes from the environment."""
    placement = spec.placement_for(variant)
    model = model_of(spec, variant)
    args = [
        "--model",
        model,
        "--served-model-name",
        model,
        "--host",
        "0.0.0.0",
        "--port",
        str(spec.server.port),
        "--max-model-len",
        str(spec.server.max_model_len),
    ]
    if not placement.on_cpu:
        args += [
            "--gpu-memory-utilization",
            str(spec.server.gpu_memory_utilization),
            "--tensor-parallel-size",
            str(placement.gpus),
        ]
    if variant.precision in DTYPE_FLAG:
        args += ["--dtype", DTYPE_FLAG[variant.precision]]
    kernel = kernel_for(variant)
    if kernel is not None:
        args += ["--quantization", kernel]
    if variant.kv_cache_dtype is not None:
        args += ["--kv-cache-dtype", str(variant.kv_cache_dtype)]
    revision = revision_of(spec, variant)
    if revision is not None:
        args += ["--revision", revision]
    extra = list(spec.server.extra_args) + list(variant.extra_args)
    sized = any(a.split("=")[0] == KV_CACHE_FLAG for a in extra) or any(
        e.name == CPU_KVCACHE_ENV for e in spec.server.env
    )
    if placement.on_cpu and not sized:
        args += [KV_CACHE_FLAG, str(cpu_kv_cache_bytes(placement))]
    return args + extra


def startup_failure_threshold(spec: QuantBenchmarkSpec) -> int:
    """Startup probe failures allowed: the probe gives up when server.startupTimeout has passed."""
    return max(1, math.ceil(duration_seconds(spec.server.startup_timeout) / STARTUP_PERIOD_S))


def server_labels(benchmark: str, run: str, variant: str) -> dict[str, str]:
    return labels(benchmark, run, variant, STEP_SERVER)


def model_volumes(spec: QuantBenchmarkSpec) -> tuple[list[Obj], list[Obj]]:
    """/dev/shm and the model cache (server.modelCache): volumes and their mounts."""
    cache = spec.server.model_cache
    volumes: list[Obj] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    mounts: list[Obj] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if cache is None:
        return volumes, mounts
    if cache.claim_name is not None:
        volumes.append({"name": "model-cache", "persistentVolumeClaim": {"claimName": cache.claim_name}})
    elif cache.host_path is not None:
        volumes.append(
            {"name": "model-cache", "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"}}
        )
    else:
        empty: Obj = {"sizeLimit": cache.size_limit} if cache.size_limit else {}
        volumes.append({"name": "model-cache", "emptyDir": empty})
    mounts.append({"name": "model-cache", "mountPath": cache.mount_path})
    return volumes, mounts


def hf_home(spec: QuantBenchmarkSpec) -> str | None:
    """HF_HOME: the model cache mount when there is one (the pod's $HOME is not /root)."""
    cache = spec.server.model_cache
    return cache.mount_path if cache is not None else None


def model_env(spec: QuantBenchmarkSpec) -> list[Obj]:
    """HF_TOKEN from server.hfTokenSecret, and server.env."""
    env: list[Obj] = []
    secret = spec.server.hf_token_secret
    if secret is not None:
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}
        )
    env += [{"name": e.name, "value": e.value} for e in spec.server.env]
    return env


def placement_fields(placement: Placement) -> Obj:
    """Pod spec fields that put a pod on the placement's nodes: tolerations, nodeSelector, affinity (a GPU
    server tolerates the GPU resource's taint; a CPU server only what the placement lists)."""
    node_selector = dict(placement.node_selector)
    if placement.node_pool is not None:
        node_selector[placement.node_pool_label] = placement.node_pool
    tolerations: list[Obj] = []
    if not placement.on_cpu:
        tolerations.append({"key": placement.gpu_resource, "operator": "Exists", "effect": "NoSchedule"})
    tolerations += [t.to_wire() for t in placement.tolerations]
    out: Obj = {"tolerations": tolerations} if tolerations else {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if placement.affinity:
        out["affinity"] = placement.affinity
    return out


def server_resources(placement: Placement) -> Obj:
    """Requests and limits: GPUs (plus cpu / memory where set), or on CPUs cpu and memory (requests = limits)."""
    if placement.on_cpu:
        cpu, memory = cpu_requests(placement)
        amounts = {"cpu": cpu, "memory": memory}
        return {"requests": dict(amounts), "limits": dict(amounts)}
    requests = {placement.gpu_resource: str(placement.gpus)}
    limits = dict(requests)
    if placement.cpu is not None:
        requests["cpu"] = placement.cpu
    if placement.memory is not None:
        requests["memory"] = limits["memory"] = placement.memory
    return {"requests": requests, "limits": limits}


def deployment(
    spec: QuantBenchmarkSpec,
    variant: Variant,
    owner: Owner,
    run: str,
    generation: int,
    pod_annotations: dict[str, str] | None = None,
    cpu_image: str = DEFAULT_CPU_SERVER_IMAGE,
    hub_access: bool = True,
    pod_user: int = 1000,
) -> Obj:
    """The variant's server Deployment; ``cpu_image``: the operator's default image for CPU servers;
    ``hub_access`` False: the server runs with the Hub's offline mode (weights from server.modelCache)."""
    placement = spec.placement_for(variant)
    name = server_name(owner.name, run, variant.name)
    pod_labels = server_labels(owner.name, run, variant.name)
    volumes, mounts = model_volumes(spec)
    probe = {"httpGet": {"path": HEALTH_PATH, "port": PORT_NAME}}
    env = model_env(spec) + (cpu_server_env(spec, placement) if placement.on_cpu else [])
    if not hub_access and all(e.name != "HF_HUB_OFFLINE" for e in spec.server.env):
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    container: Obj = {
        "name": CONTAINER,
        "image": server_image(spec, variant, cpu_image),
        "args": server_args(spec, variant),
        "ports": [{"name": PORT_NAME, "containerPort": spec.server.port, "protocol": "TCP"}],
        "env": env,
        "resources": server_resources(placement),
        "volumeMounts": mounts,
        "startupProbe": {
            **probe,
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": startup_failure_threshold(spec),
        },
        "readinessProbe": {**probe, "periodSeconds": READINESS_PERIOD_S, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
    }
    pod_spec: Obj = {
        "containers": [container],
        "volumes": volumes,
        **placement_fields(placement),
        "terminationGracePeriodSeconds": 30,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # the server needs no API access
    }
    pod_spec = restricted(pod_spec, pod_user, hf_home(spec))
    template_meta: Obj = {"labels": pod_labels}
    if pod_annotations:
        template_meta["annotations"] = dict(pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, owner, pod_labels, generation),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_labels},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def service(spec: QuantBenchmarkSpec, variant: Variant, owner: Owner, run: str, generation: int) -> Obj:
    name = server_name(owner.name, run, variant.name)
    pod_labels = server_labels(owner.name, run, variant.name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, owner, pod_labels, generation),
        "spec": {
            "type": "ClusterIP",
            "selector": pod_labels,
            "ports": [
                {"name": PORT_NAME, "port": spec.server.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def server_url(spec: QuantBenchmarkSpec, owner: Owner, run: str, variant: str) -> str:
    """The Service URL the Jobs call."""
    return f"http://{server_name(owner.name, run, variant)}.{owner.namespace}.svc:{spec.server.port}"
