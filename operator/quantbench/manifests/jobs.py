"""Benchmark Jobs (one per workload, one for fidelity, one for accuracy) and the results ConfigMap each one
writes to.

The operator creates the ConfigMap first with the Job's input (``input.json``); the Job reads it from a
read-only mount, measures the variant's server through its Service, and writes ``result.json`` back into
the same ConfigMap with ``python -m quantbench_loadgen.publish`` (its service account may update only
the ConfigMaps of its run).

With accuracy.sequential, a non-baseline variant's accuracy Job also mounts the baseline accuracy Job's
results ConfigMap (its ``result.json``, read-only, at ``BASELINE_DIR``) and stops early against those
per-question outcomes; the operator creates that Job only once the result is in (plan.baseline_use).

With accuracy.sequential, the baseline's accuracy Job also keeps every question's exact prompt and response
and publishes them gzip-compressed across the numbered ConfigMaps the operator made for them
(``<job>-responses-<i>``, as many as `sizes.responses_parts` bounds; GSM8K's 1,319 8-shot prompts alone are 2 MB
gzip-compressed), recording in its own ConfigMap's ``quantbench.dev/responses`` annotation how many it used
or why none. A variant's accuracy Job then mounts those parts read-only through one projected volume (at
``RESPONSES_DIR``) and screens questions with them (``--baseline-responses``); where there are none, it is told
why (``--unscreened-reason``), generates every question and says so in its result's notes.

With accuracy.fidelity, the baseline's fidelity Job writes the reference (its greedy answers and top-k
log-probabilities on GSM8K questions) gzip-compressed into its ConfigMap (``binaryData.result.json.gz``);
every other variant's fidelity Job mounts that ConfigMap read-only, the same way, once the reference is in,
and writes its `FidelityResult` as ``result.json``. With accuracy.sequential too, the variant's accuracy Job
also mounts its own fidelity result (at ``FIDELITY_DIR``): its greedy answer disagreement sizes the first
chunks, as in `quantbench run`.

A Job whose every source is local (a ConfigMap, a volume, or no dataset) runs with the Hub's offline mode;
a Job that reads from the Hub (``dataset.huggingFace``, or the accuracy task's public GSM8K default) does
not, and gets a writable Hub cache folder and server.hfTokenSecret as HF_TOKEN. Whether the Hub can be
reached at all is the operator's hubAccess setting, checked when the run starts (quantbench.sources).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quantbench.api.v1alpha1 import QuantBenchmarkSpec, Variant
from quantbench.deadlines import step_deadline_s
from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.manifests.security import restricted
from quantbench.manifests.server import model_of, server_url
from quantbench.naming import STEP_ACCURACY, job_name, labels, responses_part_name
from quantbench.plan import Step, StepKind
from quantbench.settings import OperatorSettings
from quantbench_loadgen.publish import GZIP_SUFFIX
from quantbench_loadgen.specs import AccuracySpec, DatasetKind, DatasetSource, FidelitySpec, Workload

INPUT_KEY = "input.json"
RESULT_KEY = "result.json"
INPUT_DIR = "/etc/quantbench"
OUTPUT_DIR = "/results"
DATA_DIR = "/data"
HUB_CACHE_DIR = "/hub-cache"
OFFLINE_ENV: tuple[tuple[str, str], ...] = (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"))
INPUT_FILE = f"{INPUT_DIR}/{INPUT_KEY}"
RESULT_GZ_KEY = f"{RESULT_KEY}{GZIP_SUFFIX}"  # binaryData: a result published gzip-compressed
BASELINE_DIR = "/etc/quantbench-baseline"
BASELINE_KEY = "accuracy.json"
BASELINE_FILE = f"{BASELINE_DIR}/{BASELINE_KEY}"
FIDELITY_DIR = "/etc/quantbench-fidelity"
FIDELITY_KEY = "fidelity.json"
FIDELITY_FILE = f"{FIDELITY_DIR}/{FIDELITY_KEY}"
REFERENCE_KEY = "fidelity-reference.json.gz"
REFERENCE_FILE = f"{BASELINE_DIR}/{REFERENCE_KEY}"
FIDELITY_SIZE_HINT = "ask for fewer accuracy.fidelity prompts, maxTokens or topK"
RESPONSES_KEY = "responses.json"  # the baseline's responses: the runner's file, the parts' key (+ .gz)
RESPONSES_OUT = f"{OUTPUT_DIR}/{RESPONSES_KEY}"
RESPONSES_PART_KEY = f"{RESPONSES_KEY}{GZIP_SUFFIX}"  # binaryData of each part ConfigMap
RESPONSES_DIR = "/etc/quantbench-responses"


@dataclass(frozen=True)
class Screening:
    """accuracy.sequential's screening in one accuracy Job: the baseline publishes its responses into
    ``publish_to`` (its part ConfigMaps, in order); a variant mounts ``mount`` (the parts the baseline used) or,
    with none, is told why (``unscreened``)."""

    publish_to: tuple[str, ...] = ()
    mount: tuple[str, ...] = ()
    unscreened: str | None = None


def responses_part_file(part: int) -> str:
    """The file one piece of the baseline's responses is mounted as, in ``RESPONSES_DIR``."""
    return f"{RESPONSES_PART_KEY}.{part}"


def responses_part_path(part: int) -> str:
    """Where a variant's Job reads one piece of the baseline's responses."""
    return f"{RESPONSES_DIR}/{responses_part_file(part)}"


def responses_configmap(owner: Owner, run: str, variant: str, part: int, generation: int) -> Obj:
    """An empty ConfigMap the baseline's accuracy Job writes one piece of its responses into (labelled like
    its results ConfigMap: pruned and deleted with the run)."""
    return _configmap(
        owner, responses_part_name(owner.name, run, variant, part), run, variant, STEP_ACCURACY, generation
    )


def results_configmap(
    owner: Owner, run: str, variant: str | None, step: str, job_input: dict[str, Any], generation: int
) -> Obj:
    """The ConfigMap a Job reads its input from and writes its result into (``result.json``)."""
    configmap = _configmap(owner, job_name(owner.name, run, variant, step), run, variant, step, generation)
    configmap["data"] = {INPUT_KEY: json.dumps(job_input, sort_keys=True)}
    return configmap


def _configmap(owner: Owner, name: str, run: str, variant: str | None, step: str, generation: int) -> Obj:
    """A ConfigMap of one step of a run: the run's labels and the benchmark's ownership."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(name, owner, labels(owner.name, run, variant, step), generation),
    }


def _dataset_mount(dataset: DatasetSource | None) -> tuple[str | None, list[Obj], list[Obj]]:
    """(path the Job reads the dataset from, volumes, mounts) for a dataset held in a PVC or a ConfigMap."""
    if dataset is None:
        return None, [], []
    if dataset.volume is not None:
        volume = {
            "name": "dataset",
            "persistentVolumeClaim": {"claimName": dataset.volume.claim_name, "readOnly": True},
        }
        mount = {"name": "dataset", "mountPath": DATA_DIR, "readOnly": True}
        return f"{DATA_DIR}/{dataset.volume.sub_path.lstrip('/')}", [volume], [mount]
    if dataset.config_map is not None:
        ref = dataset.config_map
        mount = {"name": "dataset", "mountPath": DATA_DIR, "readOnly": True}
        if dataset.kind == DatasetKind.GSM8K:
            # The ConfigMap is the GSM8K folder: test.jsonl, and train.jsonl when the ConfigMap holds it.
            return DATA_DIR, [{"name": "dataset", "configMap": {"name": ref.name}}], [mount]
        volume = {
            "name": "dataset",
            "configMap": {"name": ref.name, "items": [{"key": ref.key, "path": ref.key}]},
        }
        return f"{DATA_DIR}/{ref.key}", [volume], [mount]
    return dataset.path, [], []


def uses_hub(spec: QuantBenchmarkSpec, step: Step) -> bool:
    """Whether the step's Job reads from the Hub: a huggingFace dataset, or GSM8K without a dataset."""
    if step.kind == StepKind.FIDELITY:  # the accuracy task's GSM8K source
        return spec.accuracy is None or spec.accuracy.dataset is None
    task = step_task(spec, step)
    if isinstance(task, AccuracySpec):
        return task.dataset is None
    dataset = getattr(task, "dataset", None)
    return isinstance(dataset, DatasetSource) and dataset.hugging_face is not None


def hub_fields(
    spec: QuantBenchmarkSpec, step: Step, settings: OperatorSettings
) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """(env, volumes, mounts) for the Hub: offline mode where every source is local (or the cluster has no
    Hub access); else a writable cache folder and the token."""
    if not uses_hub(spec, step) or not settings.hub_access:
        return [{"name": k, "value": v} for k, v in OFFLINE_ENV], [], []
    env: list[Obj] = [{"name": "HF_HOME", "value": HUB_CACHE_DIR}]
    secret = spec.server.hf_token_secret
    if secret is not None:
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}}
        )
    volumes: list[Obj] = [{"name": "hub-cache", "emptyDir": {}}]
    return env, volumes, [{"name": "hub-cache", "mountPath": HUB_CACHE_DIR}]


def publish_command(
    configmap: str,
    python: str = "python",
    alongside: str | None = None,
    compress: bool = False,
    hint: str | None = None,
) -> str:
    """The shell command that writes the Job's result file into its ConfigMap (``alongside``: the mounted
    copy of what the ConfigMap already holds, counted in the size check; ``compress``: gzip-compressed into
    binaryData; ``hint``: what the size error tells to ask for instead)."""
    beside = f"--alongside {shlex.quote(alongside)} " if alongside else ""
    beside += "--gzip " if compress else ""
    beside += f"--hint {shlex.quote(hint)} " if hint else ""
    return (
        f"{python} -m quantbench_loadgen.publish --configmap {shlex.quote(configmap)} "
        f"--key {RESULT_KEY} {beside}{OUTPUT_DIR}/{RESULT_KEY}"
    )


def loadgen_args(
    url: str, model: str, workload_file: str, output: str, dataset_path: str | None = None
) -> list[str]:
    """Arguments of `quantbench-loadgen` (python -m quantbench_loadgen.cli) for one workload."""
    args = ["run", "--url", url, "--model", model, "--workload", workload_file, "--output", output]
    args.append("--no-progress")
    if dataset_path is not None:
        args += ["--dataset-path", dataset_path]
    return args


def accuracy_args(
    url: str,
    model: str,
    spec_file: str,
    max_len: int,
    output: str,
    dataset_path: str | None = None,
    tokenizer: str | None = None,
) -> list[str]:
    """Arguments of `python -m quantbench_loadgen.accuracy` for the variant's accuracy task."""
    args = ["--base-url", url, "--model", model, "--spec", spec_file, "--max-length", str(max_len)]
    args += ["--out", output]
    if dataset_path is not None:
        args += ["--dataset", dataset_path]
    if tokenizer is not None:
        args += ["--tokenizer", tokenizer]
    return args


def sequential_args(
    responses_out: str | None = None,
    baseline_result: str | None = None,
    baseline_responses: Sequence[str] = (),
    unscreened: str | None = None,
    fidelity_result: str | None = None,
) -> list[str]:
    """accuracy.sequential's arguments of `python -m quantbench_loadgen.accuracy`, for `quantbench run` and
    the Jobs alike: the baseline keeps its responses (``responses_out``); a variant asks the baseline's
    questions in chunks against its result, screening with its responses (files, or the pieces of them) or
    told why there are none, its own fidelity sizing the first chunks."""
    if responses_out is not None:
        return ["--responses-out", responses_out]
    if baseline_result is None:
        return []
    args = ["--baseline-result", baseline_result]
    if baseline_responses:  # a question the variant answers as the baseline did: screened
        args += ["--baseline-responses", *baseline_responses]
    elif unscreened is not None:
        args += ["--unscreened-reason", unscreened]
    if fidelity_result is not None:  # the variant's greedy answer disagreement sizes the chunks
        args += ["--fidelity-result", fidelity_result]
    return args


# The load generator's live metrics (quantbench_loadgen_*), scraped by the chart's Jobs PodMonitor.
METRICS_PORT = 9400
METRICS_PORT_NAME = "metrics"


def workload_command(url: str, model: str, dataset_path: str | None, configmap: str) -> list[str]:
    run = loadgen_args(url, model, f"{INPUT_DIR}/{INPUT_KEY}", f"{OUTPUT_DIR}/{RESULT_KEY}", dataset_path)
    run += ["--metrics-port", str(METRICS_PORT)]  # live quantbench_loadgen_* series (the chart's PodMonitor)
    return [
        "/bin/sh",
        "-c",
        f"set -e; {shlex.join(['quantbench-loadgen', *run])}; {publish_command(configmap, alongside=INPUT_FILE)}",
    ]


def accuracy_command(
    url: str,
    model: str,
    dataset_path: str | None,
    max_len: int,
    configmap: str,
    baseline_file: str | None = None,
    fidelity_file: str | None = None,
    screening: Screening | None = None,
) -> list[str]:
    """The accuracy Job's command; with accuracy.sequential, a variant's (``baseline_file``) stops early
    against the baseline's outcomes and screens with its responses, and the baseline's
    (``screening.publish_to``) publishes its responses before its result (never failing for them)."""
    run = accuracy_args(
        url, model, f"{INPUT_DIR}/{INPUT_KEY}", max_len, f"{OUTPUT_DIR}/{RESULT_KEY}", dataset_path
    )
    screening = screening or Screening()
    parts = [responses_part_path(i) for i in range(len(screening.mount))]
    publishes = bool(screening.publish_to) and baseline_file is None
    run += sequential_args(
        RESPONSES_OUT if publishes else None,
        baseline_file,
        parts,
        screening.unscreened,
        fidelity_file if baseline_file is not None else None,
    )
    command = ["python", "-m", "quantbench_loadgen.accuracy", *run]
    steps = [shlex.join(command)]
    if publishes:  # the responses first: the operator reads their record once the result is in
        names = [a for n in screening.publish_to for a in ("--part", n)]
        responses = [
            "python", "-m", "quantbench_loadgen.publish", "--configmap", configmap, "--key", RESPONSES_KEY,
            *names, RESPONSES_OUT,
        ]  # fmt: skip
        steps.append(f"{shlex.join(responses)} || true")
    steps.append(publish_command(configmap, alongside=INPUT_FILE))
    return ["/bin/sh", "-c", f"set -e; {'; '.join(steps)}"]


def fidelity_args(
    url: str,
    model: str,
    fidelity: FidelitySpec,
    reference: str,
    output: str | None,
    dataset_path: str | None = None,
) -> list[str]:
    """Arguments of `quantbench-loadgen fidelity`: the baseline's reference (``output`` None: it writes
    ``reference``, on the GSM8K folder ``dataset_path``, else the public GSM8K), or a variant's comparison
    with ``reference`` written to ``output``."""
    head = ["fidelity", "reference" if output is None else "compare", "--url", url, "--model", model]
    if output is not None:
        return [*head, "--reference", reference, "--output", output]
    source = ["--gsm8k", dataset_path] if dataset_path is not None else ["--gsm8k-public"]
    return [
        *head, *source, "--count", str(fidelity.prompts), "--max-tokens", str(fidelity.max_tokens),
        "--top-k", str(fidelity.top_k), "--reference", reference,
    ]  # fmt: skip


def fidelity_command(
    url: str,
    model: str,
    fidelity: FidelitySpec,
    dataset_path: str | None,
    configmap: str,
    reference_file: str | None = None,
) -> list[str]:
    """The baseline (``reference_file`` None) writes the reference and publishes it gzip-compressed; another
    variant compares with the baseline's reference at ``reference_file`` and publishes its result."""
    result = f"{OUTPUT_DIR}/{RESULT_KEY}"
    if reference_file is None:
        run = fidelity_args(url, model, fidelity, result, None, dataset_path)
        publish = publish_command(configmap, alongside=INPUT_FILE, compress=True, hint=FIDELITY_SIZE_HINT)
    else:
        run = fidelity_args(url, model, fidelity, reference_file, result)
        publish = publish_command(configmap, alongside=INPUT_FILE)
    return ["/bin/sh", "-c", f"set -e; {shlex.join(['quantbench-loadgen', *run])}; {publish}"]


def step_task(spec: QuantBenchmarkSpec, step: Step) -> Workload | AccuracySpec | FidelitySpec:
    """What the planned step runs: its workload, the fidelity comparison or the accuracy task, as written
    in the spec."""
    if step.kind == StepKind.FIDELITY:
        if spec.accuracy is None or spec.accuracy.fidelity is None:
            raise ValueError("a fidelity step needs accuracy.fidelity in the spec")
        return spec.accuracy.fidelity
    if step.kind == StepKind.ACCURACY:
        return spec.accuracy or AccuracySpec()
    if step.workload is None:
        raise ValueError(f"step {step.name!r} runs no Job")
    return spec.workload(step.workload)


def job_input(spec: QuantBenchmarkSpec, step: Step) -> dict[str, Any]:
    """What the Job is asked to do (its ConfigMap's ``input.json``)."""
    return step_task(spec, step).to_wire()


def job(
    spec: QuantBenchmarkSpec,
    variant: Variant,
    owner: Owner,
    run: str,
    step: Step,
    generation: int,
    settings: OperatorSettings,
    baseline_result: str | None = None,
    fidelity_result: str | None = None,
    screening: Screening | None = None,
) -> Obj:
    """The Job for one planned step (a workload, fidelity or the accuracy task) of one variant;
    ``baseline_result``: the results ConfigMap of the baseline's Job of the same step, for a sequential
    evaluation against its outcomes or a fidelity comparison with its reference; ``fidelity_result``: the
    variant's own fidelity results ConfigMap, for a sequential evaluation's first chunks; ``screening``: the
    ConfigMaps the baseline publishes its responses into, or those a variant mounts (or why none)."""
    if fidelity_result is not None and (step.kind != StepKind.ACCURACY or baseline_result is None):
        raise ValueError("only a sequential evaluation against the baseline reads the variant's fidelity")
    if screening is not None and step.kind != StepKind.ACCURACY:
        raise ValueError(f"only the accuracy step screens with the baseline's responses, not {step.name!r}")
    if screening is not None and screening.mount and baseline_result is None:
        raise ValueError("only a sequential evaluation against the baseline reads the baseline's responses")
    if baseline_result is not None and step.kind not in (StepKind.ACCURACY, StepKind.FIDELITY):
        raise ValueError(f"only the fidelity and accuracy steps use the baseline's result, not {step.name!r}")
    compares = step.kind == StepKind.FIDELITY and variant.name != spec.baseline
    if compares and baseline_result is None:
        raise ValueError(f"variant {variant.name}'s fidelity step needs the baseline's reference")
    name = job_name(owner.name, run, variant.name, step.name)
    url = server_url(spec, owner, run, variant.name)
    model = model_of(spec, variant)
    task = step_task(spec, step)
    if isinstance(task, FidelitySpec):  # the GSM8K questions of the accuracy task's source
        dataset = spec.accuracy.dataset if spec.accuracy is not None else None
    else:
        dataset = getattr(task, "dataset", None)
    dataset_path, volumes, mounts = _dataset_mount(dataset if isinstance(dataset, DatasetSource) else None)
    if isinstance(task, FidelitySpec):
        command = fidelity_command(url, model, task, dataset_path, name, REFERENCE_FILE if compares else None)
    elif step.kind == StepKind.ACCURACY:
        command = accuracy_command(
            url,
            model,
            dataset_path,
            spec.server.max_model_len,
            name,
            BASELINE_FILE if baseline_result is not None else None,
            FIDELITY_FILE if fidelity_result is not None else None,
            screening,
        )
    else:
        command = workload_command(url, model, dataset_path, name)
    step_labels = labels(owner.name, run, variant.name, step.name)
    env, hub_volumes, hub_mounts = hub_fields(spec, step, settings)
    volumes = [
        {"name": "input", "configMap": {"name": name, "items": [{"key": INPUT_KEY, "path": INPUT_KEY}]}},
        {"name": "results", "emptyDir": {}},
        *volumes,
        *hub_volumes,
    ]
    mounts = [
        {"name": "input", "mountPath": INPUT_DIR, "readOnly": True},
        {"name": "results", "mountPath": OUTPUT_DIR},
        *mounts,
        *hub_mounts,
    ]
    if baseline_result is not None:
        if step.kind == StepKind.FIDELITY:
            items = [{"key": RESULT_GZ_KEY, "path": REFERENCE_KEY}]
        else:
            items = [{"key": RESULT_KEY, "path": BASELINE_KEY}]
        volumes.append({"name": "baseline", "configMap": {"name": baseline_result, "items": items}})
        mounts.append({"name": "baseline", "mountPath": BASELINE_DIR, "readOnly": True})
    if screening is not None and screening.mount:  # every piece of the baseline's responses, one folder
        sources = [
            {
                "configMap": {
                    "name": n,
                    "items": [{"key": RESPONSES_PART_KEY, "path": responses_part_file(i)}],
                }
            }
            for i, n in enumerate(screening.mount)
        ]
        volumes.append({"name": "responses", "projected": {"sources": sources}})
        mounts.append({"name": "responses", "mountPath": RESPONSES_DIR, "readOnly": True})
    if fidelity_result is not None:
        items = [{"key": RESULT_KEY, "path": FIDELITY_KEY}]
        volumes.append({"name": "fidelity", "configMap": {"name": fidelity_result, "items": items}})
        mounts.append({"name": "fidelity", "mountPath": FIDELITY_DIR, "readOnly": True})
    container: Obj = {
        "name": "benchmark",
        "image": settings.job_image,
        "imagePullPolicy": settings.job_image_pull_policy,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
        # A failed Job's last log line (e.g. a result too large for its ConfigMap) reaches the status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if step.kind == StepKind.WORKLOAD:
        container["ports"] = [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}]
    pod: Obj = {"containers": [container], "volumes": volumes}
    if settings.job_node_selector:
        pod["nodeSelector"] = dict(settings.job_node_selector)
    deadline = step_deadline_s(spec, step.name)
    return run_job(
        name,
        owner,
        run,
        step_labels,
        generation,
        settings,
        pod,
        settings.job_backoff_limit,
        activeDeadlineSeconds=deadline,
    )


def run_job(
    name: str,
    owner: Owner,
    run: str,
    step_labels: dict[str, str],
    generation: int,
    settings: OperatorSettings,
    pod: Obj,
    backoff_limit: int,
    hf_home: str | None = None,
    **job_spec: Any,
) -> Obj:
    """A Job of the run around ``pod`` (containers, volumes, placement): its pods run as the Job's own
    service account (which may publish its result only), never restart, and carry the settings' annotations."""
    template_meta: Obj = {"labels": step_labels}
    if settings.job_pod_annotations:
        template_meta["annotations"] = dict(settings.job_pod_annotations)
    pod_spec: Obj = {
        "serviceAccountName": name,  # the Job's own account: it may update its own ConfigMap only
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        **pod,
    }
    pod_spec = restricted(pod_spec, settings.pod_user, hf_home)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, owner, step_labels, generation),
        "spec": {
            "backoffLimit": backoff_limit,
            **job_spec,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }
