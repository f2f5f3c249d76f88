"""Operator settings, read from the environment (QUANTBENCH_*), with defaults that suit a cluster install."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


def package_version() -> str:
    """The installed quantbench version: the tag of the images built from this source (images/)."""
    try:
        return version("quantbench")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "0.0.0"


VERSION = package_version()
DEFAULT_JOB_IMAGE = f"quantbench/jobs:{VERSION}"
DEFAULT_OPERATOR_IMAGE = f"quantbench/operator:{VERSION}"
DEFAULT_CPU_SERVER_IMAGE = f"quantbench/vllm-cpu:{VERSION}"
ENV_PREFIX = "QUANTBENCH_"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_image: str = Field(
        default=DEFAULT_JOB_IMAGE, description="Image of the load-generator, fidelity and accuracy Jobs."
    )
    job_image_pull_policy: str = Field(default="IfNotPresent", description="imagePullPolicy of the Jobs.")
    cpu_server_image: str = Field(
        default=DEFAULT_CPU_SERVER_IMAGE,
        description="vLLM server image of variants placed with gpus: 0 (the CPU build of vLLM), unless the "
        "benchmark sets server.cpuImage.",
    )
    hub_access: bool = Field(
        default=True,
        description="Whether pods of this cluster can download from the Hugging Face Hub. False (an "
        "air-gapped cluster): a benchmark that needs the Hub (dataset.huggingFace, the public GSM8K default, "
        "a model id without server.modelCache volume) fails when its run starts, before any GPU is held; "
        "servers and Jobs run with the Hub's offline mode.",
    )
    job_backoff_limit: int = Field(default=0, ge=0, description="Retries of a failed benchmark Job.")
    server_pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations added to every vLLM server pod (JSON object)."
    )
    job_pod_annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations added to every benchmark Job pod (JSON object)."
    )
    job_node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="nodeSelector of every benchmark Job pod (load generator, accuracy), JSON object; empty: "
        "any node the scheduler picks. The Jobs need no GPU: keep them off the GPU pools' nodes.",
    )
    probe_image: str | None = Field(
        default=None,
        description="Image of the roofline probe Jobs: PyTorch with CUDA, and vLLM for its FP8 kernels "
        "(default: the benchmark's own server.image).",
    )
    probe_source_image: str = Field(
        default=DEFAULT_OPERATOR_IMAGE,
        description="Image holding the quantbench package, lent to the probe Job by an init container "
        "(the operator's own image).",
    )
    probe_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="A probe Job still running after this long fails (activeDeadlineSeconds).",
    )
    pod_user: int = Field(
        default=1000,
        ge=1,
        description="User and group id every pod the operator creates runs as (PodSecurity restricted).",
    )
    allow_host_path: bool = Field(
        default=False,
        description="Whether a spec may use a hostPath model cache (server.modelCache.hostPath).",
    )
    host_path_prefixes: list[str] = Field(
        default_factory=list,
        description="With allow_host_path: the node paths a hostPath model cache may be under (JSON list; "
        "empty: any).",
    )
    allowed_images: list[str] = Field(
        default_factory=list,
        description="Prefixes (registry/repository) a server.image must start with (JSON list; empty: any).",
    )
    leader_election: bool = Field(
        default=True, description="Act only while holding the operator Lease (one writer among replicas)."
    )
    lease_namespace: str = Field(
        default="quantbench-system",
        description="Namespace of the operator Lease that every operator process of the cluster competes for.",
    )
    lease_duration_seconds: float = Field(
        default=15.0,
        ge=3,
        description="How long the Lease outlives its holder's last renewal (renewed at 1/3).",
    )
    stats_seconds: float | None = Field(
        default=None, gt=0, description="Log reconcile and API request counts this often (benchmarks)."
    )
    resync_seconds: float = Field(
        default=10.0, gt=0, description="How often each benchmark is looked at when nothing changes."
    )
    crash_restarts: int = Field(default=3, ge=1, description="Container restarts that count as a crash loop.")
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve the summaries as Prometheus metrics on this port."
    )
    gpu_hour_prices: dict[str, float] = Field(
        default_factory=dict,
        description="USD per GPU-hour by node pool ('*': any pool), JSON object; a benchmark's own "
        "spec.gpuHourPrices wins.",
    )
    metrics_address: str = Field(
        default="0.0.0.0", description="Address the metrics endpoint binds to (127.0.0.1: this host only)."
    )
    results_dir: str | None = Field(
        default=None, description="If set, each run's results folder is also written under this path."
    )

    @field_validator("host_path_prefixes", "allowed_images", mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value

    @field_validator("gpu_hour_prices")
    @classmethod
    def _prices(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not v >= 0}
        if bad:
            raise ValueError(f"GPU-hour prices must be >= 0, got {bad}")
        return value

    @field_validator(
        "server_pod_annotations", "job_pod_annotations", "job_node_selector", "gpu_hour_prices", mode="before"
    )
    @classmethod
    def _json_object(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from QUANTBENCH_<FIELD> variables (e.g. QUANTBENCH_JOB_IMAGE); errors name the variable."""
        env = os.environ if env is None else env
        values = {
            name: env[ENV_PREFIX + name.upper()]
            for name in cls.model_fields
            if ENV_PREFIX + name.upper() in env
        }
        try:
            return cls.model_validate(values)
        except (ValidationError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"invalid operator settings in {ENV_PREFIX}* environment variables: {exc}"
            ) from None
