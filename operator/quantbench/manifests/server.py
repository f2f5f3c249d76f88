"""The vLLM server of one variant: a Deployment and a Service, with the flags each precision needs."""

from __future__ import annotations

import math

from quantbench.api.v1alpha1 import Placement, Precision, QuantBenchmarkSpec, Variant
from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.manifests.security import restricted
from quantbench.naming import STEP_SERVER, labels, server_name
from quantbench.plan import kernel_for
from quantbench_loadgen.schema import duration_seconds

CONTAINER = "vllm"
PORT_NAME = "http"
HEALTH_PATH = "/health"
STARTUP_PERIOD_S = 10
READINESS_PERIOD_S = 5
DTYPE_FLAG: dict[str, str] = {Precision.BF16: "bfloat16", Precision.FP16: "float16"}


def model_of(spec: QuantBenchmarkSpec, variant: Variant) -> str:
    return variant.model or spec.model


def server_args(spec: QuantBenchmarkSpec, variant: Variant) -> list[str]:
    """vLLM OpenAI server arguments for the variant (the image's entrypoint runs the server)."""
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
    return args + list(spec.server.extra_args) + list(variant.extra_args)


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
    """Pod spec fields that put a pod on the placement's GPU nodes: tolerations, nodeSelector, affinity."""
    node_selector = dict(placement.node_selector)
    if placement.node_pool is not None:
        node_selector[placement.node_pool_label] = placement.node_pool
    tolerations: list[Obj] = [{"key": placement.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    tolerations += [t.to_wire() for t in placement.tolerations]
    out: Obj = {"tolerations": tolerations}
    if node_selector:
        out["nodeSelector"] = node_selector
    if placement.affinity:
        out["affinity"] = placement.affinity
    return out


def deployment(
    spec: QuantBenchmarkSpec,
    variant: Variant,
    owner: Owner,
    run: str,
    generation: int,
    pod_annotations: dict[str, str] | None = None,
    pod_user: int = 1000,
) -> Obj:
    placement = spec.placement_for(variant)
    name = server_name(owner.name, run, variant.name)
    pod_labels = server_labels(owner.name, run, variant.name)
    volumes, mounts = model_volumes(spec)
    gpus = {placement.gpu_resource: str(placement.gpus)}
    probe = {"httpGet": {"path": HEALTH_PATH, "port": PORT_NAME}}
    container: Obj = {
        "name": CONTAINER,
        "image": spec.server.image,
        "args": server_args(spec, variant),
        "ports": [{"name": PORT_NAME, "containerPort": spec.server.port, "protocol": "TCP"}],
        "env": model_env(spec),
        "resources": {"limits": dict(gpus), "requests": dict(gpus)},
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
