"""The `QuantBenchmark` API, group quantbench.dev, version v1alpha1.

These pydantic models are the single source of truth: the CRD in crds/ is generated from them
(`quantbench crd`), `quantbench validate` checks specs with them, and the operator and the local executor
read specs through them. Rules that span fields are written once, in `CROSS_FIELD_RULES`, as CEL for the
apiserver, and checked in Python by the model validators below with the same messages.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import ConfigDict, Field, field_validator, model_validator

from quantbench.api.summary import RunSummary
from quantbench_loadgen.schema import DNS_LABEL_PATTERN, ApiModel, Duration, cel, cel_rules
from quantbench_loadgen.specs import AccuracySpec, Workload

GROUP = "quantbench.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "QuantBenchmark"
PLURAL = "quantbenchmarks"
SINGULAR = "quantbenchmark"
SHORT_NAMES = ["qb"]

DEFAULT_SERVER_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_POOL_LABEL = "quantbench.dev/pool"
LABEL_KEY_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_SUFFIX: dict[str, float] = {
    "": 1.0,
    "m": 1e-3,
    **{s: 1000.0**i for i, s in enumerate(("k", "M", "G", "T", "P", "E"), start=1)},
    **{s: 1024.0**i for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), start=1)},
}


def quantity(value: str) -> float:
    """A Kubernetes quantity (``500m``, ``4``, ``16Gi``, ``64G``) as a number of base units."""
    m = _QUANTITY.match(value)
    if m is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 4, 500m or 16Gi")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def _cron_field(value: str) -> str:
    item = rf"(\*|({value})(-({value}))?)(/[0-9]+)?"
    return rf"{item}(,{item})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"
CRON_PATTERN = (
    r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|"
    + r" +".join(
        _cron_field(v)
        for v in (
            r"[0-5]?[0-9]",
            r"[01]?[0-9]|2[0-3]",
            r"0?[1-9]|[12][0-9]|3[01]",
            rf"0?[1-9]|1[0-2]|{_MONTHS}",
            rf"[0-7]|{_DAYS}",
        )
    )
    + r")$"
)
MODEL_CACHE_ONE_VOLUME = "set claimName or hostPath, not both"
SCHEDULE_HINT = (
    "schedule must be a cron expression of 5 fields (minute hour day-of-month month day-of-week), "
    "e.g. '0 3 * * 1' for 03:00 every Monday, '30 2 * * *' for 02:30 daily, or '@daily'"
)
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
TIME_ZONE_HINT = "timeZone must name an IANA time zone, e.g. 'Europe/Berlin', 'America/New_York' or 'UTC'"
# A CPU server's requests when placement.gpus is 0 and placement.cpu / memory are not set.
DEFAULT_CPU_CPU = "4"
DEFAULT_CPU_MEMORY = "16Gi"
MODEL_CACHE_MOUNT_PATH = "mountPath must be an absolute path other than /dev/shm (the server's shared memory)"
TOLERATION_EXISTS_NO_VALUE = "a toleration with operator Exists takes no value"
RESERVED_MOUNT = "/dev/shm"


class Precision(StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8_W8A8 = "int8-w8a8"
    AWQ_INT4 = "awq-int4"
    GPTQ_INT4 = "gptq-int4"


class QuantizationKernel(StrEnum):
    """vLLM `--quantization` values a variant may force instead of the precision's default kernel."""

    FP8 = "fp8"
    AWQ_MARLIN = "awq_marlin"
    AWQ = "awq"
    GPTQ_MARLIN = "gptq_marlin"
    GPTQ = "gptq"
    MARLIN = "marlin"
    MACHETE = "machete"
    COMPRESSED_TENSORS = "compressed-tensors"


# The vLLM --quantization kernels that can serve each precision's checkpoints.
KERNELS_FOR_PRECISION: dict[Precision, tuple[QuantizationKernel, ...]] = {
    Precision.BF16: (),
    Precision.FP16: (),
    Precision.FP8: (QuantizationKernel.FP8, QuantizationKernel.COMPRESSED_TENSORS),
    Precision.INT8_W8A8: (QuantizationKernel.COMPRESSED_TENSORS,),
    Precision.AWQ_INT4: (QuantizationKernel.AWQ_MARLIN, QuantizationKernel.AWQ),
    Precision.GPTQ_INT4: (
        QuantizationKernel.GPTQ_MARLIN,
        QuantizationKernel.GPTQ,
        QuantizationKernel.MARLIN,
        QuantizationKernel.MACHETE,
        QuantizationKernel.COMPRESSED_TENSORS,
    ),
}
KERNEL_MUST_FIT = "quantizationKernel must fit the precision: " + "; ".join(
    f"{p}: {', '.join(k) if k else 'none'}" for p, k in KERNELS_FOR_PRECISION.items()
)


def _kernel_rule() -> str:
    fits = " || ".join(
        f"(self.precision == '{p}' && self.quantizationKernel in [{', '.join(repr(str(k)) for k in ks)}])"
        for p, ks in KERNELS_FOR_PRECISION.items()
        if ks
    )
    return f"!has(self.quantizationKernel) || {fits}"


class KvCacheDtype(StrEnum):
    AUTO = "auto"
    FP8 = "fp8"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"


class Toleration(ApiModel):
    """A Kubernetes toleration (core/v1 Toleration)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                TOLERATION_EXISTS_NO_VALUE,
            )
        )
    )

    key: str | None = Field(default=None, description="Taint key; empty with Exists matches all taints.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value, for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(default=None, description="For NoExecute: how long to stay bound.")

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Self:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(f"{TOLERATION_EXISTS_NO_VALUE} (got value {self.value!r})")
        return self


class Placement(ApiModel):
    """Where a variant's vLLM server runs and how many GPUs it takes."""

    node_pool: str | None = Field(
        default=None,
        description="Node pool name, matched against the node label named by nodePoolLabel.",
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=63,
    )
    node_pool_label: str = Field(
        default=DEFAULT_POOL_LABEL,
        description="Node label that names the pool, e.g. cloud.google.com/gke-nodepool or karpenter.sh/nodepool.",
        pattern=LABEL_KEY_PATTERN,
        max_length=316,
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels to require.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations for the server pod.")
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 Affinity for the server pod, passed through as given.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    gpus: int = Field(
        default=1,
        ge=0,
        le=16,
        description="GPUs per server (tensor parallel size). 0 serves on CPUs (vLLM's CPU backend, e.g. a Xeon "
        "pool): the server requests cpu and memory instead of GPUs and runs server.cpuImage; fp8 and the "
        "Marlin kernels end Unsupported there.",
    )
    gpu_resource: str = Field(
        default="nvidia.com/gpu",
        description="Extended resource name of the GPU, e.g. nvidia.com/gpu or nvidia.com/mig-3g.40gb.",
        pattern=LABEL_KEY_PATTERN,
    )
    cpu: str | None = Field(
        default=None,
        description=f"CPU request (and limit) of the server, e.g. '16'. Default with gpus 0: {DEFAULT_CPU_CPU}; "
        "with GPUs: none. On CPUs it also sets the server's thread count.",
        pattern=QUANTITY_PATTERN,
    )
    memory: str | None = Field(
        default=None,
        description=f"Memory request (and limit) of the server, e.g. '64Gi'. Default with gpus 0: "
        f"{DEFAULT_CPU_MEMORY}; with GPUs: none. On CPUs it must hold the weights, the KV cache (a quarter "
        "of it, at least 1 GiB: --kv-cache-memory-bytes, unless extraArgs or VLLM_CPU_KVCACHE_SPACE in "
        "server.env size it) and vLLM itself.",
        pattern=QUANTITY_PATTERN,
    )

    @property
    def on_cpu(self) -> bool:
        """Whether the server runs on CPUs (gpus: 0)."""
        return self.gpus == 0


class PlacementOverride(ApiModel):
    """A variant's placement: any field set here replaces the benchmark's default placement field."""

    node_pool: str | None = Field(
        default=None,
        description="Node pool name for this variant (cross-GPU comparisons).",
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=63,
    )
    node_pool_label: str | None = Field(default=None, description="Node label naming the pool.")
    node_selector: dict[str, str] | None = Field(default=None, description="Node labels to require.")
    tolerations: list[Toleration] | None = Field(default=None, description="Tolerations for the server pod.")
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="A core/v1 Affinity, passed through as given.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    gpus: int | None = Field(default=None, ge=0, le=16, description="GPUs per server; 0: serve on CPUs.")
    gpu_resource: str | None = Field(default=None, description="Extended resource name of the GPU.")
    cpu: str | None = Field(default=None, description="CPU request of the server.", pattern=QUANTITY_PATTERN)
    memory: str | None = Field(
        default=None, description="Memory request of the server.", pattern=QUANTITY_PATTERN
    )


class EnvVar(ApiModel):
    name: str = Field(description="Variable name.", pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = Field(default="", description="Variable value.")


class Variant(ApiModel):
    """One precision of the model to serve and measure."""

    model_config = ConfigDict(json_schema_extra=cel_rules(cel(_kernel_rule(), KERNEL_MUST_FIT)))

    name: str = Field(
        description="Variant name: a DNS label, unique within the benchmark (used in child object names).",
        pattern=DNS_LABEL_PATTERN,
        max_length=20,
    )
    precision: Precision = Field(description="Precision: bf16, fp16, fp8, int8-w8a8, awq-int4 or gptq-int4.")
    model: str | None = Field(
        default=None,
        description="Model for this variant (e.g. a pre-quantized AWQ checkpoint); default: spec.model.",
        min_length=1,
    )
    revision: str | None = Field(
        default=None,
        description="Checkpoint revision of this variant's model (commit, branch or tag; vLLM --revision); "
        "default: spec.revision.",
        min_length=1,
        max_length=100,
    )
    quantization_kernel: QuantizationKernel | None = Field(
        default=None,
        description="Force a vLLM --quantization kernel (e.g. awq for the legacy AWQ kernel); default per precision.",
    )
    kv_cache_dtype: KvCacheDtype | None = Field(default=None, description="vLLM --kv-cache-dtype.")
    extra_args: list[str] = Field(default_factory=list, description="Extra vLLM server arguments.")
    image: str | None = Field(
        default=None,
        description="Server image of this variant only (e.g. another vLLM build); default: server.image, or "
        "server.cpuImage / the operator's CPU image when placed with gpus: 0.",
        min_length=1,
    )
    placement: PlacementOverride | None = Field(default=None, description="Overrides of spec.placement.")

    @model_validator(mode="after")
    def _kernel_fits(self) -> Self:
        kernel = self.quantization_kernel
        if kernel is not None and kernel not in KERNELS_FOR_PRECISION[self.precision]:
            fits = ", ".join(KERNELS_FOR_PRECISION[self.precision]) or "none: remove quantizationKernel"
            raise ValueError(
                f"{KERNEL_MUST_FIT} (got {kernel} for {self.precision}; kernels that fit: {fits})"
            )
        return self


class ModelCache(ApiModel):
    """Where the server keeps downloaded weights between runs."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("!(has(self.claimName) && has(self.hostPath))", MODEL_CACHE_ONE_VOLUME),
            cel(
                "!has(self.mountPath) || (self.mountPath.startsWith('/') && "
                "self.mountPath != '/' && "
                "!(self.mountPath + '/').startsWith('/dev/shm/') && !'/dev/shm/'.startsWith(self.mountPath + '/'))",
                MODEL_CACHE_MOUNT_PATH,
            ),
        )
    )

    claim_name: str | None = Field(default=None, description="PersistentVolumeClaim with the model cache.")
    host_path: str | None = Field(default=None, description="Node path with the model cache.")
    size_limit: str | None = Field(
        default=None,
        description="emptyDir size limit when neither claimName nor hostPath is set.",
        pattern=QUANTITY_PATTERN,
    )
    mount_path: str = Field(
        default="/root/.cache/huggingface", description="Mount path in the server container."
    )

    @model_validator(mode="after")
    def _one_volume(self) -> Self:
        if self.claim_name is not None and self.host_path is not None:
            raise ValueError(MODEL_CACHE_ONE_VOLUME)
        if not mount_path_allowed(self.mount_path):
            raise ValueError(f"{MODEL_CACHE_MOUNT_PATH} (got {self.mount_path!r})")
        return self


def mount_path_allowed(path: str) -> bool:
    """An absolute path, not the root, that neither holds nor lies under the server's /dev/shm mount."""
    if not path.startswith("/") or not path.strip("/"):
        return False
    with_slash = path.rstrip("/") + "/"
    reserved = RESERVED_MOUNT + "/"
    return not (with_slash.startswith(reserved) or reserved.startswith(with_slash))


class SecretKeyRef(ApiModel):
    name: str = Field(
        description="Secret name, in the QuantBenchmark's namespace.", pattern=DNS_LABEL_PATTERN
    )
    key: str = Field(default="token", description="Key in the Secret.", min_length=1)


class Server(ApiModel):
    """The vLLM server every variant runs."""

    image: str = Field(default=DEFAULT_SERVER_IMAGE, description="vLLM OpenAI-compatible server image.")
    cpu_image: str | None = Field(
        default=None,
        description="vLLM server image for variants placed with gpus: 0 (the CPU build of vLLM). Default: "
        "the operator's setting, quantbench/vllm-cpu:<version> (images/vllm-cpu).",
        min_length=1,
    )
    max_model_len: int = Field(default=4096, ge=256, le=1_048_576, description="vLLM --max-model-len.")
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0.05, le=0.99, description="vLLM --gpu-memory-utilization."
    )
    model_cache: ModelCache | None = Field(default=None, description="Model weight cache volume.")
    hf_token_secret: SecretKeyRef | None = Field(default=None, description="Secret holding HF_TOKEN.")
    startup_timeout: Duration = Field(
        default="20m", description="How long a server may take to become Ready."
    )
    port: int = Field(default=8000, ge=1024, le=65535, description="Server port.")
    extra_args: list[str] = Field(default_factory=list, description="Extra arguments for every variant.")
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment for the server container.")


class Parallelism(StrEnum):
    AUTO = "Auto"
    SEQUENTIAL = "Sequential"


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"


class Tolerances(ApiModel):
    """How much worse a figure may get before it counts as a regression, per metric family.

    Performance families are relative (0.10 = 10% worse); accuracy is in points of fraction correct and must
    also be significant (paired test on the same questions where both runs answered them). Where a figure
    has an interval (repeated measurements), a change that stays inside it is noise, never a regression."""

    latency: float = Field(default=0.10, ge=0, le=10, description="Decode ms/token at batch 1 (relative).")
    throughput: float = Field(
        default=0.10, ge=0, le=1, description="Output tokens/s per batch size (relative)."
    )
    ttft: float = Field(default=0.15, ge=0, le=10, description="TTFT median and p99 per rate (relative).")
    itl: float = Field(default=0.15, ge=0, le=10, description="ITL median and p99 per rate (relative).")
    capacity: float = Field(
        default=0.10,
        ge=0,
        le=1,
        description="Serving output tokens/s and goodput per rate (relative).",
    )
    accuracy: float = Field(
        default=0.02, ge=0, le=1, description="Accuracy drop, fraction correct (0.02 = 2 points)."
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Significance level of the accuracy test between the runs."
    )


class RegressionSpec(ApiModel):
    """What a run is compared with, and how much worse counts as a regression."""

    reference: str | None = Field(
        default=None,
        description="Run id to compare every run with (a pinned reference, kept out of pruning); default: "
        "the previous successful run.",
        pattern=r"^r[0-9]{8}-[0-9]{4,6}(-[0-9]+)?$",
        max_length=40,
    )
    tolerances: Tolerances = Field(default_factory=Tolerances, description="Tolerance per metric family.")


class CrossFieldRule(ApiModel):
    """A rule that spans fields: CEL for the apiserver; the same message from the Python validators."""

    rule: str
    message: str
    field_path: str | None = None


class Rule(StrEnum):
    """The cross-field rules, by what they check."""

    BASELINE_IS_A_VARIANT = "baseline-is-a-variant"
    UNIQUE_VARIANT_NAMES = "unique-variant-names"
    UNIQUE_WORKLOAD_NAMES = "unique-workload-names"
    SOMETHING_TO_RUN = "something-to-run"


CROSS_FIELD_RULES: dict[Rule, CrossFieldRule] = {
    Rule.BASELINE_IS_A_VARIANT: CrossFieldRule(
        rule="self.variants.exists(v, v.name == self.baseline)",
        message="baseline must name one of spec.variants",
        field_path=".baseline",
    ),
    Rule.UNIQUE_VARIANT_NAMES: CrossFieldRule(
        rule="self.variants.all(v, self.variants.exists_one(w, w.name == v.name))",
        message="variant names must be unique",
        field_path=".variants",
    ),
    Rule.UNIQUE_WORKLOAD_NAMES: CrossFieldRule(
        rule="!has(self.workloads) || self.workloads.all(w, self.workloads.exists_one(x, x.name == w.name))",
        message="workload names must be unique",
        field_path=".workloads",
    ),
    Rule.SOMETHING_TO_RUN: CrossFieldRule(
        rule="(has(self.workloads) && size(self.workloads) > 0) || has(self.accuracy)",
        message="give at least one workload or an accuracy task",
    ),
}


class Timeouts(ApiModel):
    """Deadlines that keep a run from holding GPUs when it cannot progress."""

    step: Duration | None = Field(
        default=None,
        description="Deadline of each benchmark Job (its activeDeadlineSeconds); default: sized from the "
        "workload (requests x tokens at a slow decode rate, plus 10 minutes).",
    )
    run: Duration | None = Field(
        default=None,
        description="Deadline of a whole run: variants still unfinished then fail with RunTimeout and their "
        "GPUs are released; default: the longest lane's startupTimeout and step deadlines added up.",
    )


class QuantBenchmarkSpec(ApiModel):
    """A comparison of one model in several precisions: servers, load, accuracy, schedule."""

    model: str = Field(
        description="Model to serve: Hugging Face id or a path in the model cache.", min_length=1
    )
    baseline: str = Field(description="Name of the variant every other variant is compared with.")
    variants: list[Variant] = Field(min_length=1, max_length=16, description="Precisions to compare.")
    placement: Placement = Field(default_factory=Placement, description="Default placement of the servers.")
    server: Server = Field(default_factory=Server, description="vLLM server settings.")
    workloads: list[Workload] = Field(
        default_factory=list, max_length=16, description="Performance workloads, run in order per variant."
    )
    accuracy: AccuracySpec | None = Field(default=None, description="Accuracy task, run per variant.")
    parallelism: Parallelism = Field(
        default=Parallelism.AUTO,
        description="Auto runs variants in parallel when GPUs allow; Sequential runs one variant at a time.",
    )
    probe: bool = Field(
        default=False,
        description="Measure the GPU roofline first (quantbench probe) for the efficiency column and the "
        "crossover attribution: the operator runs one probe Job on one GPU of each node pool before that "
        "pool's servers start (quantbench run: on its own GPU). A probe that fails never fails the run.",
    )
    gpu_hour_prices: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="USD per GPU-hour by node pool name ('*': any pool), for the cost per million output "
        "tokens at capacity and the recommendation.",
    )
    revision: str | None = Field(
        default=None,
        description="Checkpoint revision of spec.model (commit, branch or tag; vLLM --revision), recorded "
        "with each run.",
        min_length=1,
        max_length=100,
    )
    schedule: str | None = Field(
        default=None,
        description="Cron schedule (5 fields, in timeZone) for recurring runs, e.g. '0 3 * * 1'.",
        max_length=100,
        json_schema_extra=cel_rules(cel(f"self.matches(r'{CRON_PATTERN}')", SCHEDULE_HINT)),
    )
    time_zone: str | None = Field(
        default=None,
        description="IANA time zone of the schedule, e.g. Europe/Berlin (default UTC); runs follow its "
        "daylight-saving changes.",
        max_length=64,
        json_schema_extra=cel_rules(cel(f"self.matches(r'{TIME_ZONE_PATTERN}')", TIME_ZONE_HINT)),
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="When a run is due while one is in progress: Forbid waits for it to end (the due run "
        "then starts if still within startingDeadlineSeconds); Replace ends it and starts the new one.",
    )
    starting_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="A scheduled run that could not start within this many seconds of its time is "
        "skipped (missed runs start once, never once per missed time).",
    )
    history_limit: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Runs kept in status.history; older runs' ConfigMaps and stored results are deleted.",
    )
    suspend: bool = Field(default=False, description="Start no new runs while true.")
    regression: RegressionSpec = Field(
        default_factory=RegressionSpec, description="Regression detection between runs."
    )
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Step and run deadlines.")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not (re.match(CRON_PATTERN, value) and croniter.is_valid(value)):
            raise ValueError(f"{SCHEDULE_HINT} (got {value!r})")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{TIME_ZONE_HINT} (got {value!r})") from None
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        names = [v.name for v in self.variants]
        if self.baseline not in names:
            raise ValueError(
                f"{CROSS_FIELD_RULES[Rule.BASELINE_IS_A_VARIANT].message} (got {self.baseline!r}; variants: {names})"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"{CROSS_FIELD_RULES[Rule.UNIQUE_VARIANT_NAMES].message} (got {names})")
        workload_names = [w.name for w in self.workloads]
        if len(set(workload_names)) != len(workload_names):
            raise ValueError(
                f"{CROSS_FIELD_RULES[Rule.UNIQUE_WORKLOAD_NAMES].message} (got {workload_names})"
            )
        if not self.workloads and self.accuracy is None:
            raise ValueError(CROSS_FIELD_RULES[Rule.SOMETHING_TO_RUN].message)
        clash = child_name_clash(self)
        if clash is not None:
            raise ValueError(clash)
        return self

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def workload(self, name: str) -> Workload:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)

    def placement_for(self, variant: Variant) -> Placement:
        """The benchmark's placement with the variant's overrides applied."""
        if variant.placement is None:
            return self.placement
        overrides = variant.placement.model_dump(exclude_none=True)
        return self.placement.model_copy(update=overrides)


def child_name_clash(spec: QuantBenchmarkSpec) -> str | None:
    """Two children of one run whose names would be equal (a variant's name ending like another's step,
    e.g. variant a with workload b-accuracy and variant a-wl-b with the accuracy task), or None.

    A run's children are named <benchmark>-<run>-<suffix>; the suffixes below must be distinct.
    """
    owners: dict[str, str] = {
        "run": "the run's spec snapshot",
        "summary": "the run's summary",
    }
    steps = ["server"] + [f"wl-{w.name}" for w in spec.workloads]
    steps += ["accuracy"] if spec.accuracy is not None else []
    if spec.probe:
        for v in spec.variants:
            pool = spec.placement_for(v).node_pool
            suffix = f"probe-{pool}" if pool else "probe"
            owners.setdefault(suffix, f"the roofline probe of {'pool ' + pool if pool else 'any GPU node'}")
    for v in spec.variants:
        for step in steps:
            suffix = f"{v.name}-{step}".lower()
            what = f"variant {v.name} step {step}"
            if suffix in owners:
                return (
                    f"child object names collide: {what} and {owners[suffix]} would both be named "
                    f"<benchmark>-<run>-{suffix}; rename a variant or workload"
                )
            owners[suffix] = what
    return None


# ---------------------------------------------------------------------------------------------- status


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PARTIALLY_SUCCEEDED = "PartiallySucceeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class VariantPhase(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_GPU = "WaitingForGPU"
    STARTING = "Starting"
    BENCHMARKING = "Benchmarking"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNSUPPORTED = "Unsupported"


class ProbePhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class ProbeStatus(ApiModel):
    node_pool: str | None = Field(
        default=None, description="Node pool the probe measured; none: any GPU node."
    )
    phase: ProbePhase = Field(description="Where the pool's roofline probe is.")
    node: str | None = Field(default=None, description="Node the probe ran on.")
    gpu: str | None = Field(default=None, description="GPU the probe measured, as its driver names it.")
    memory_bandwidth_bytes_per_s: float | None = Field(
        default=None, ge=0, description="Measured streaming read bandwidth, bytes/s."
    )
    reason: str | None = Field(default=None, description="Why the probe failed or was skipped, CamelCase.")
    message: str | None = Field(default=None, description="What happened, for a person.")


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(description="Condition type: Ready, Progressing, Degraded or Regressed.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.", pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = Field(default="", description="What happened and what to do about it.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(default=None, description="Spec generation the condition saw.")


class VariantStatus(ApiModel):
    name: str = Field(description="Variant name.")
    precision: str = Field(description="Variant precision.")
    phase: VariantPhase = Field(description="Where the variant's steps are.")
    node_pool: str | None = Field(default=None, description="Node pool the server runs on.")
    node: str | None = Field(default=None, description="Node the server ran on.")
    gpu: str | None = Field(default=None, description="GPU product of that node.")
    kernel: str | None = Field(default=None, description="Quantization kernel the server used.")
    image_digest: str | None = Field(
        default=None, description="Digest of the image the server ran (its pod's container status)."
    )
    gpu_driver: str | None = Field(default=None, description="NVIDIA driver version of the node.")
    startup_seconds: float | None = Field(default=None, ge=0, description="Server start to Ready, seconds.")
    weights_gib: float | None = Field(default=None, ge=0, description="Model weight memory, GiB.")
    step: str | None = Field(default=None, description="Step in progress.")
    reason: str | None = Field(default=None, description="Why the variant failed, CamelCase.")
    message: str | None = Field(default=None, description="Failure detail and what to do.")


class Trigger(StrEnum):
    CREATED = "Created"
    SPEC_CHANGED = "SpecChanged"
    SCHEDULE = "Schedule"
    RUN_NOW = "RunNow"


class VariantProvenance(ApiModel):
    """What one variant of a run ran on: what could explain a change between two runs."""

    variant: str = Field(description="Variant name.")
    image: str | None = Field(default=None, description="Server image as the spec named it.")
    image_digest: str | None = Field(
        default=None, description="Digest of the image the server pod ran (from its container status)."
    )
    vllm_version: str | None = Field(default=None, description="vLLM version the server reported.")
    model: str = Field(description="Model (checkpoint) the server loaded.")
    revision: str | None = Field(default=None, description="Checkpoint revision, when the spec pins one.")
    gpu: str | None = Field(default=None, description="GPU product of the server's node.")
    gpu_driver: str | None = Field(default=None, description="NVIDIA driver version of that node.")
    node: str | None = Field(default=None, description="Node the server ran on.")


class RunProvenance(ApiModel):
    """What a run ran on, for every variant, and which QuantBench and spec generation drove it."""

    generation: int = Field(description="Spec generation the run executed.")
    quantbench_version: str = Field(description="Version of the operator that ran it.")
    variants: list[VariantProvenance] = Field(default_factory=list, description="One entry per variant.")


class Regression(ApiModel):
    """One figure of a variant that got worse than in the reference run by more than its tolerance."""

    variant: str = Field(description="Variant name.")
    family: str = Field(description="Metric family: latency, throughput, ttft, itl, capacity or accuracy.")
    metric: str = Field(description="The figure, e.g. msPerTokenBs1, outputTokensPerSecond, ttftP99Ms.")
    at: str | None = Field(default=None, description="Batch size, request rate or task of the figure.")
    before: float = Field(description="The figure in the reference run.")
    after: float = Field(description="The figure in this run.")
    change: float = Field(description="Relative change (performance) or points (accuracy), signed.")
    p_value: float | None = Field(default=None, description="Accuracy: the test's p-value between the runs.")
    reference_run: str = Field(description="Run compared with.")
    changed: list[str] = Field(
        default_factory=list, description="What differs between the two runs for this variant."
    )
    message: str = Field(description="The regression in one sentence.")


class VariantDigest(ApiModel):
    """A variant's key figures in a history entry (the full row is in the run's summary ConfigMap)."""

    variant: str = Field(description="Variant name.")
    phase: str = Field(description="How the variant's run ended.")
    verdict: str | None = Field(default=None, description="The variant's verdict against the baseline.")
    ms_per_token_bs1: float | None = Field(default=None, ge=0, description="Decode ms/token at batch 1.")
    latency_ratio_to_baseline: float | None = Field(default=None, description="ms/token / baseline's.")
    accuracy: float | None = Field(default=None, ge=0, le=1, description="Fraction correct.")
    accuracy_delta_to_baseline: float | None = Field(default=None, description="Accuracy - baseline's.")


class RunRecord(ApiModel):
    id: str = Field(description="Run id, e.g. r20261123-0300 (used in child names).")
    generation: int = Field(description="Spec generation the run executed.")
    phase: Phase = Field(description="How the run ended (or Running).")
    trigger: Trigger | None = Field(default=None, description="What started the run.")
    scheduled_at: datetime | None = Field(
        default=None, description="The schedule time the run was started for (trigger Schedule)."
    )
    started_at: datetime = Field(description="Run start.")
    finished_at: datetime | None = Field(default=None, description="Run end.")
    provenance: RunProvenance | None = Field(default=None, description="What the run ran on.")
    summary: RunSummary | None = Field(
        default=None,
        description="The run's full comparison summary (entries written before compact history only).",
    )
    best: str | None = Field(default=None, description="Recommended variant of the run, if any.")
    variants: list[VariantDigest] = Field(
        default_factory=list, description="Key figures and verdict per variant."
    )
    summary_config_map: str | None = Field(
        default=None,
        description="ConfigMap holding the run's full summary (key summary.json.gz: gzip, in binaryData).",
    )
    reference_run: str | None = Field(default=None, description="Run the regressions were measured against.")
    regressions: list[Regression] = Field(
        default_factory=list, description="Figures that got worse than in the reference run."
    )

    @field_validator("regressions", mode="before")
    @classmethod
    def _structured(cls, value: Any) -> Any:
        # Entries written by older operators were plain strings: not comparable, dropped.
        return [r for r in value if not isinstance(r, str)] if isinstance(value, list) else value


class QuantBenchmarkStatus(ApiModel):
    phase: Phase | None = Field(default=None, description="Phase of the current or last run.")
    observed_generation: int | None = Field(default=None, description="Last spec generation acted on.")
    measured_spec_hash: str | None = Field(
        default=None,
        description="Hash of what the last run measured (the spec without historyLimit, schedule, timeZone, "
        "concurrencyPolicy, startingDeadlineSeconds, suspend, timeouts and regression): an edit that leaves "
        "it unchanged starts no run.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded, Regressed."
    )
    current_run: RunRecord | None = Field(default=None, description="The run in progress.")
    variants: list[VariantStatus] = Field(default_factory=list, description="Per-variant state of that run.")
    probes: list[ProbeStatus] = Field(
        default_factory=list, description="Roofline probe of each node pool of that run (spec.probe)."
    )
    summary: RunSummary | None = Field(default=None, description="Summary of the last finished run.")
    history: list[RunRecord] = Field(default_factory=list, description="Finished runs, newest first.")
    best: str | None = Field(default=None, description="Recommended variant of the last run.")
    variant_names: str | None = Field(
        default=None, description="Variant names, comma-separated (for kubectl get)."
    )
    last_run_time: datetime | None = Field(default=None, description="Start of the last run.")
    next_run_time: datetime | None = Field(default=None, description="Next scheduled run.")
    last_schedule_time: datetime | None = Field(
        default=None, description="Latest schedule time taken (run) or given up (missed its deadline)."
    )
    regressions: list[Regression] = Field(
        default_factory=list, description="Regressions of the last finished run (empty: none)."
    )


class ObjectMeta(ApiModel):
    model_config = ApiModel.model_config | {"extra": "allow"}
    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Benchmark name.")
    namespace: str | None = None


class QuantBenchmark(ApiModel):
    """A whole resource as written in bench.yaml."""

    api_version: Literal["quantbench.dev/v1alpha1"] = Field(description="quantbench.dev/v1alpha1")
    kind: Literal["QuantBenchmark"] = Field(description="QuantBenchmark")
    metadata: ObjectMeta
    spec: QuantBenchmarkSpec
    status: QuantBenchmarkStatus | None = None
