"""What a benchmark Job is asked to do: workloads, datasets and the accuracy task.

These models are part of the `QuantBenchmark` API (the operator embeds them in its spec, and the CRD schema is
generated from them) and the input of `quantbench-loadgen`. They live here so that the Job image needs no
operator code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self, TypeVar

from pydantic import ConfigDict, Field, field_validator, model_validator

from quantbench_loadgen.schema import DNS_LABEL_PATTERN, ApiModel, Duration, RequestRate, cel, cel_rules

TokenCount = Annotated[int, Field(ge=1, le=1_048_576)]


class DatasetKind(StrEnum):
    RANDOM = "random"
    SHAREGPT = "sharegpt"
    GSM8K = "gsm8k"
    JSONL = "jsonl"


class ConfigMapFileRef(ApiModel):
    """A file held in a ConfigMap key, mounted read-only into the benchmark Job."""

    name: str = Field(description="ConfigMap name, in the QuantBenchmark's namespace.", min_length=1)
    key: str = Field(description="Key of the ConfigMap that holds the file.", min_length=1)


class VolumeFileRef(ApiModel):
    """A file on a PersistentVolumeClaim, mounted read-only into the benchmark Job."""

    claim_name: str = Field(description="PersistentVolumeClaim name, in the same namespace.", min_length=1)
    sub_path: str = Field(
        description="Path of the file (or folder, for GSM8K) inside the volume.", min_length=1
    )


RANDOM_NEEDS_LENGTHS = "a random dataset needs inputLen and outputLen"
RANDOM_HAS_NO_SOURCE = "a random dataset has no source: remove path/configMap/volume/huggingFace"
ONE_SOURCE = "give one dataset source: path, configMap, volume or huggingFace"
GSM8K_CONFIGMAP_KEY = (
    "a gsm8k dataset from a ConfigMap is the ConfigMap mounted as the GSM8K folder: set configMap.key to "
    "test.jsonl and put GSM8K's test.jsonl under that key (kubectl create configmap NAME "
    "--from-file=test.jsonl); add train.jsonl only if it fits the ConfigMap's 1 MiB limit (the full train "
    "split does not: without it few-shot examples come from the test split), or use dataset.volume"
)


class DatasetSource(ApiModel):
    """Where prompts come from. Exactly one source is used: a local path, a ConfigMap, a volume, or a
    Hugging Face dataset id (the default public source; needs network access from the Job)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("self.kind != 'random' || (has(self.inputLen) && has(self.outputLen))", RANDOM_NEEDS_LENGTHS),
            cel(
                "self.kind != 'random' || !(has(self.path) || has(self.configMap) || has(self.volume)"
                " || has(self.huggingFace))",
                RANDOM_HAS_NO_SOURCE,
            ),
            cel(
                "[has(self.path), has(self.configMap), has(self.volume), has(self.huggingFace)]"
                ".filter(x, x).size() <= 1",
                ONE_SOURCE,
            ),
            cel(
                "self.kind != 'gsm8k' || !has(self.configMap) || self.configMap.key == 'test.jsonl'",
                GSM8K_CONFIGMAP_KEY,
            ),
        )
    )

    kind: DatasetKind = Field(description="Dataset format: random, sharegpt, gsm8k or jsonl.")
    path: str | None = Field(
        default=None,
        description="Path of the file (or GSM8K folder) as seen by the process that reads it.",
    )
    config_map: ConfigMapFileRef | None = Field(
        default=None,
        description="Read the file from a ConfigMap (1 MiB at most). For gsm8k the ConfigMap is the folder: "
        "key test.jsonl, plus train.jsonl when it fits (else few-shot examples come from the test split).",
    )
    volume: VolumeFileRef | None = Field(default=None, description="Read the file from a PVC.")
    hugging_face: str | None = Field(
        default=None,
        description="Hugging Face dataset id to download when no offline source is given.",
    )
    input_len: TokenCount | None = Field(
        default=None, description="random: exact prompt length in tokens; others: keep prompts up to it."
    )
    output_len: TokenCount | None = Field(
        default=None, description="Output tokens requested per prompt (random: exact; others: override)."
    )
    range_ratio: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="random: lengths drawn uniformly in [len*(1-r), len*(1+r)].",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        sources = [
            s for s in ("path", "config_map", "volume", "hugging_face") if getattr(self, s) is not None
        ]
        if self.kind == DatasetKind.RANDOM:
            if self.input_len is None or self.output_len is None:
                raise ValueError(RANDOM_NEEDS_LENGTHS)
            if sources:
                raise ValueError(RANDOM_HAS_NO_SOURCE)
        elif len(sources) > 1:
            raise ValueError(f"{ONE_SOURCE} (got {len(sources)})")
        if (
            self.kind == DatasetKind.GSM8K
            and self.config_map is not None
            and self.config_map.key != "test.jsonl"
        ):
            raise ValueError(f"{GSM8K_CONFIGMAP_KEY} (got key {self.config_map.key!r})")
        return self


class Slo(ApiModel):
    """Service-level objectives: a request counts towards goodput only if it meets every one that is set."""

    ttft_ms: float | None = Field(default=None, gt=0, description="Time to first token, milliseconds.")
    itl_ms: float | None = Field(
        default=None, gt=0, description="Inter-token latency (each gap), milliseconds."
    )
    tpot_ms: float | None = Field(default=None, gt=0, description="Time per output token, milliseconds.")
    e2e_ms: float | None = Field(default=None, gt=0, description="End-to-end request latency, milliseconds.")


class WorkloadType(StrEnum):
    LATENCY = "latency"
    THROUGHPUT = "throughput"
    SERVING = "serving"
    CAPACITY = "capacity"


class ArrivalProcess(StrEnum):
    POISSON = "poisson"
    GAMMA = "gamma"
    CONSTANT = "constant"


T = TypeVar("T", int, float)


def _no_repeats(values: list[T]) -> list[T]:
    seen: set[T] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate value {v}: list each value once")
        seen.add(v)
    return values


class _WorkloadBase(ApiModel):
    name: str = Field(
        description="Workload name: a DNS label, unique within the benchmark.",
        pattern=DNS_LABEL_PATTERN,
        max_length=20,
    )
    seed: int = Field(default=0, ge=0, description="Seed for prompts and arrivals: same seed, same run.")
    endpoint: Literal["completions", "chat"] = Field(
        default="completions", description="OpenAI-compatible endpoint to call."
    )
    repetitions: int = Field(
        default=1,
        ge=1,
        le=50,
        description="Run the workload's steps this many times (same prompts and seed): every figure and "
        "ratio to the baseline then gets a 95% confidence interval, and 'equal' means the interval of the "
        "ratio contains 1.",
    )


class LatencyWorkload(_WorkloadBase):
    """One request at a time: the per-token latency a single user sees."""

    type: Literal[WorkloadType.LATENCY] = Field(description="latency")
    batch_size: int = Field(default=1, ge=1, le=1, description="Concurrent requests; latency runs use 1.")
    input_len: TokenCount = Field(default=512, description="Prompt tokens.")
    output_len: TokenCount = Field(default=128, description="Output tokens (ignore_eos).")
    iterations: int = Field(default=20, ge=1, le=10_000, description="Measured requests.")
    warmup_iterations: int = Field(default=3, ge=0, le=1_000, description="Unmeasured requests first.")


class ThroughputWorkload(_WorkloadBase):
    """Batches of N identical-length requests released together, for each N of the sweep."""

    type: Literal[WorkloadType.THROUGHPUT] = Field(description="throughput")
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        min_length=1,
        max_length=32,
        description="Batch sizes to sweep, e.g. [1, 16, 64].",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    input_len: TokenCount = Field(default=512, description="Prompt tokens.")
    output_len: TokenCount = Field(default=128, description="Output tokens (ignore_eos).")
    iterations: int = Field(default=3, ge=1, le=1_000, description="Measured batches per batch size.")
    warmup_iterations: int = Field(default=1, ge=0, le=100, description="Unmeasured batches first.")

    @field_validator("batch_sizes")
    @classmethod
    def _distinct_sizes(cls, value: list[int]) -> list[int]:
        return _no_repeats(value)


ONE_AMOUNT = "set exactly one of numPrompts and duration"


class ServingWorkload(_WorkloadBase):
    """Requests arriving at a rate (or closed loop) from a dataset, as an online service sees them."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(cel("has(self.numPrompts) != has(self.duration)", ONE_AMOUNT))
    )

    type: Literal[WorkloadType.SERVING] = Field(description="serving")
    dataset: DatasetSource = Field(description="Where the prompts come from.")
    request_rates: list[RequestRate] = Field(
        min_length=1,
        max_length=32,
        description="Request rates to run, requests/s; 'inf' is a closed loop.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    num_prompts: int | None = Field(default=None, ge=1, le=1_000_000, description="Requests per rate.")
    duration: Duration | None = Field(default=None, description="Run each rate for this long instead.")
    max_concurrency: int | None = Field(
        default=None, ge=1, le=100_000, description="Cap on requests in flight."
    )
    arrival: ArrivalProcess = Field(default=ArrivalProcess.POISSON, description="Inter-arrival distribution.")
    burstiness: float = Field(
        default=1.0, gt=0, le=100, description="Gamma shape: 1 is Poisson, < 1 burstier, > 1 more regular."
    )
    warmup_requests: int = Field(default=0, ge=0, le=10_000, description="Requests sent first, not measured.")
    slo: Slo | None = Field(default=None, description="Objectives for goodput.")

    @field_validator("request_rates")
    @classmethod
    def _distinct_rates(cls, value: list[float]) -> list[float]:
        return _no_repeats(value)

    @model_validator(mode="after")
    def _amount(self) -> Self:
        if (self.num_prompts is None) == (self.duration is None):
            raise ValueError(ONE_AMOUNT)
        return self


CAPACITY_NEEDS_SLO = "a capacity workload needs slo.ttftMs, slo.itlMs, slo.tpotMs or slo.e2eMs"
CAPACITY_RANGE = "capacity: startRate must be at most maxRate"
CAPACITY_FLOOR = "capacity: minRate must be at most startRate"
DEFAULT_MIN_RATE = 1e-3  # requests/s: where a search whose every rate fails stops by default
CAPACITY_ONE_AMOUNT = "capacity: set exactly one of numPrompts and duration (requests per tried rate)"


class CapacityWorkload(_WorkloadBase):
    """The highest request rate whose latency percentiles meet the SLO: a bounded search (geometric growth
    from startRate until a rate fails, then geometric bisection) of at most ``steps`` serving runs."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.numPrompts) != has(self.duration)", CAPACITY_ONE_AMOUNT),
            cel(
                "has(self.slo) && (has(self.slo.ttftMs) || has(self.slo.itlMs) || has(self.slo.tpotMs)"
                " || has(self.slo.e2eMs))",
                CAPACITY_NEEDS_SLO,
            ),
            # The apiserver applies no defaults to fields only one workload type has: write them out.
            cel(
                "(has(self.startRate) ? self.startRate : 1.0) <= (has(self.maxRate) ? self.maxRate : 1000.0)",
                CAPACITY_RANGE,
            ),
            cel(
                f"(has(self.minRate) ? self.minRate : {DEFAULT_MIN_RATE}) <= "
                "(has(self.startRate) ? self.startRate : 1.0)",
                CAPACITY_FLOOR,
            ),
        )
    )

    type: Literal[WorkloadType.CAPACITY] = Field(description="capacity")
    dataset: DatasetSource = Field(description="Where the prompts come from.")
    slo: Slo = Field(description="Objectives every tried rate must meet at the chosen percentile.")
    percentile: Literal[50, 90, 95, 99] = Field(
        default=90, description="Latency percentile held to the SLO (p90: 90% of requests meet it)."
    )
    start_rate: float = Field(default=1.0, gt=0, le=100_000, description="First rate tried, requests/s.")
    max_rate: float = Field(default=1000.0, gt=0, le=100_000, description="Highest rate tried, requests/s.")
    min_rate: float = Field(
        default=DEFAULT_MIN_RATE,
        gt=0,
        le=100_000,
        description="Lowest rate tried, requests/s: when the first rate fails the search halves it down to "
        "this rate and, if that fails too, ends with no capacity (none meets the SLO at or above it). Low "
        "rates are the slowest steps (numPrompts at 0.25 req/s take 4x as long as at 1 req/s); minRate = "
        "startRate ends the search at a failing first rate.",
    )
    steps: int = Field(
        default=16,
        ge=2,
        le=64,
        description="Serving runs the search may use. With growth 2 it needs about log2(capacity / "
        "startRate) + 4 to end within 10% of the capacity.",
    )
    growth: float = Field(default=2.0, gt=1.0, le=16.0, description="Rate factor while every rate passes.")
    tolerance: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Stop when the failing rate is within this share above the passing one.",
    )
    num_prompts: int | None = Field(default=None, ge=1, le=1_000_000, description="Requests per tried rate.")
    duration: Duration | None = Field(default=None, description="Run each tried rate for this long instead.")
    max_concurrency: int | None = Field(
        default=None, ge=1, le=100_000, description="Cap on requests in flight."
    )
    arrival: ArrivalProcess = Field(default=ArrivalProcess.POISSON, description="Inter-arrival distribution.")
    burstiness: float = Field(default=1.0, gt=0, le=100, description="Gamma shape (1 is Poisson).")
    warmup_requests: int = Field(default=0, ge=0, le=10_000, description="Requests sent first at each rate.")
    max_failed_ratio: float = Field(
        default=0.0, ge=0, lt=1, description="Share of failed requests a passing rate may have."
    )

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if (self.num_prompts is None) == (self.duration is None):
            raise ValueError(CAPACITY_ONE_AMOUNT)
        if all(v is None for v in (self.slo.ttft_ms, self.slo.itl_ms, self.slo.tpot_ms, self.slo.e2e_ms)):
            raise ValueError(CAPACITY_NEEDS_SLO)
        if self.start_rate > self.max_rate:
            raise ValueError(f"{CAPACITY_RANGE} (got {self.start_rate} > {self.max_rate})")
        if self.min_rate > self.start_rate:
            raise ValueError(f"{CAPACITY_FLOOR} (got {self.min_rate:g} > {self.start_rate:g})")
        return self

    def serving_at(self, rate: float) -> ServingWorkload:
        """The serving workload that tries one rate."""
        return ServingWorkload(
            name=self.name,
            seed=self.seed,
            endpoint=self.endpoint,
            type=WorkloadType.SERVING,
            dataset=self.dataset,
            request_rates=[rate if float(rate).is_integer() else f"{rate:.6g}"],
            num_prompts=self.num_prompts,
            duration=self.duration,
            max_concurrency=self.max_concurrency,
            arrival=self.arrival,
            burstiness=self.burstiness,
            warmup_requests=self.warmup_requests,
            slo=self.slo,
        )


Workload = Annotated[
    LatencyWorkload | ThroughputWorkload | ServingWorkload | CapacityWorkload, Field(discriminator="type")
]


GSM8K_SOURCE = "accuracy.dataset.kind must be gsm8k for the gsm8k task"
MAX_ACCURACY_QUESTIONS = 5000


class SequentialSpec(ApiModel):
    """Ask the questions in chunks and stop a variant as soon as its accuracy verdict is decided."""

    looks: int = Field(
        default=10,
        ge=2,
        le=20,
        description="Analyses, equally spaced in information (they come sooner, in questions, when fewer "
        "answers change).",
    )
    discordance: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Planning share of questions the variant answers differently from the baseline (right "
        "on one side, wrong on the other); sets how many questions the design may ask.",
    )
    screen: bool = Field(
        default=True,
        description="Before generating, check each question with one teacher-forced prefill of the baseline's "
        "response and take the baseline's outcome where the variant would answer the same (the verdict is "
        "unchanged). Saves GPU time when questions go one at a time; on a batching GPU server a screen can "
        "cost as much as a generation (README: Screening), so set false there.",
    )


class FidelitySpec(ApiModel):
    """Fidelity to the baseline on GSM8K questions: teacher-forced top-k KL divergence and agreement. On
    Kubernetes the baseline's reference (about prompts x maxTokens x topK log-probabilities) must fit its
    Job's results ConfigMap (1 MiB, gzip-compressed): the operator refuses a spec whose reference cannot."""

    prompts: int = Field(default=16, ge=1, le=1000, description="GSM8K test questions to compare on.")
    max_tokens: int = Field(default=32, ge=1, le=1024, description="The baseline's greedy answer length.")
    top_k: int = Field(default=20, ge=1, le=20, description="Log-probabilities per position (vLLM: <= 20).")


class AccuracySpec(ApiModel):
    """GSM8K through lm-eval against the variant's server, with per-question outcomes for paired tests."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(cel("!has(self.dataset) || self.dataset.kind == 'gsm8k'", GSM8K_SOURCE))
    )

    task: Literal["gsm8k"] = Field(default="gsm8k", description="Accuracy task; gsm8k is supported.")
    num_fewshot: int = Field(default=8, ge=0, le=16, description="Few-shot examples in each prompt.")
    limit: int | None = Field(
        default=100,
        ge=1,
        le=MAX_ACCURACY_QUESTIONS,
        description="Questions to ask (the first N of the test split; GSM8K's has 1319). At most 5000: the "
        "per-question outcomes of the result must fit the Job's results ConfigMap (1 MiB).",
    )
    seed: int = Field(default=1234, ge=0, description="Seed for few-shot sampling and generation.")
    max_gen_tokens: int = Field(default=256, ge=16, le=8192, description="Generation cap per answer.")
    concurrency: int = Field(default=8, ge=1, le=1024, description="Requests in flight against the server.")
    margin: float = Field(
        default=2.0,
        gt=0,
        lt=100,
        description="Non-inferiority margin in accuracy points: a variant passes when its accuracy is shown to "
        "be no worse than the baseline's minus this many points (one-sided paired test).",
    )
    dataset: DatasetSource | None = Field(
        default=None,
        description="GSM8K folder (kind gsm8k) with train.jsonl and test.jsonl; default: $QUANTBENCH_GSM8K_DIR, else the public openai/gsm8k.",
    )
    fidelity: FidelitySpec | None = Field(
        default=None,
        description="Also measure each variant's token distributions against the baseline's (KL divergence, "
        "top-1 and greedy answer agreement): it detects quantization damage with far fewer questions. On "
        "Kubernetes the baseline's reference (about prompts x maxTokens x topK log-probabilities) must fit its "
        "Job's results ConfigMap (1 MiB, gzip-compressed): the operator refuses a spec whose reference cannot.",
    )
    sequential: SequentialSpec | None = Field(
        default=None,
        description="Group-sequential evaluation: the baseline answers the design's maximum number of "
        "questions (at most limit); each variant answers them in chunks and stops once non-inferiority at "
        "the margin is shown or ruled out (5% error rate and 80% power kept). The baseline runs first; a "
        "variant's accuracy step starts once the baseline's result is in.",
    )

    @model_validator(mode="after")
    def _gsm8k_source(self) -> Self:
        if self.dataset is not None and self.dataset.kind != DatasetKind.GSM8K:
            raise ValueError(GSM8K_SOURCE)
        return self
