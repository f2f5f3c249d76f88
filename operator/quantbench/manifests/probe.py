"""The roofline probe Job of one node pool (spec.probe) and its results ConfigMap.

The probe runs in the vLLM image the servers use (PyTorch with CUDA, and vLLM's kernels for the FP8 step),
on one GPU of the pool, before the pool's servers start. That image has no QuantBench: an init
container from the operator's own image copies the quantbench and quantbench_loadgen sources into an
emptyDir (``python -m quantbench.probe.lend``), which the probe container puts on its PYTHONPATH. The probe
container then measures (``python3 -m quantbench.probe``) and publishes the ProbeResult JSON into the
ConfigMap like every other Job (``quantbench_loadgen.publish``, as the run's Job service account). A probe
that records failures for some precisions (FP8 on a GPU without FP8 tensor cores) exits 1 but still has a
result, which is published; a probe that wrote nothing fails its Job.

The model's config.json comes from ``spec.model``: a path in the model cache (mounted as for the servers)
or a Hugging Face id fetched with the server's HF_TOKEN into that cache.
"""

from __future__ import annotations

import shlex

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.manifests.common import Obj, Owner
from quantbench.manifests.jobs import OUTPUT_DIR, RESULT_KEY, publish_command, results_configmap, run_job
from quantbench.manifests.server import model_env, model_volumes, placement_fields
from quantbench.naming import labels, probe_name, probe_step
from quantbench.plan import ProbePlan
from quantbench.settings import OperatorSettings

SOURCE_DIR = "/opt/quantbench-src"
PYTHON = "python3"  # the vLLM image has python3, not always python


def probe_args(model_config: str, output: str) -> list[str]:
    """Arguments of `python -m quantbench.probe` for the model's config (file, folder or Hub id)."""
    return ["--model-config", model_config, "--out", output]


def probe_script(model: str, output: str = f"{OUTPUT_DIR}/{RESULT_KEY}", python: str = PYTHON) -> str:
    """The probe container's measurement (its tables go to the log): succeeds when a result file was
    written, whatever precisions it records as failed."""
    argv = [python, "-m", "quantbench.probe", *probe_args(model, output)]
    out = shlex.quote(output)
    return (
        f'{shlex.join(argv)} || echo "quantbench probe exited $?"; '
        f'test -s {out} || {{ echo "quantbench probe wrote no result" >&2; exit 1; }}'
    )


def lend_command() -> list[str]:
    """The init container's command: copy the QuantBench sources where the probe container finds them."""
    return ["python", "-m", "quantbench.probe.lend", SOURCE_DIR]


def probe_configmap(owner: Owner, run: str, probe: ProbePlan, generation: int) -> Obj:
    """The ConfigMap the probe Job publishes into; its input records what was asked (it is not mounted)."""
    return results_configmap(owner, run, None, probe_step(probe.pool), probe.to_wire(), generation)


def probe_job(
    spec: QuantBenchmarkSpec,
    probe: ProbePlan,
    owner: Owner,
    run: str,
    generation: int,
    settings: OperatorSettings,
) -> Obj:
    """The Job that measures one GPU of the probe's pool."""
    name = probe_name(owner.name, run, probe.pool)
    step_labels = labels(owner.name, run, None, probe_step(probe.pool))
    placement = spec.placement_for(spec.variant(probe.variant))
    volumes, mounts = model_volumes(spec)
    volumes = [*volumes, {"name": "results", "emptyDir": {}}, {"name": "source", "emptyDir": {}}]
    mounts = [
        *mounts,
        {"name": "results", "mountPath": OUTPUT_DIR},
        {"name": "source", "mountPath": SOURCE_DIR, "readOnly": True},
    ]
    gpu = {placement.gpu_resource: "1"}
    script = f"set -e; {probe_script(spec.model)}; {publish_command(name, PYTHON)}"
    init: Obj = {
        "name": "quantbench",
        "image": settings.probe_source_image,
        "imagePullPolicy": settings.job_image_pull_policy,
        "command": lend_command(),
        "volumeMounts": [{"name": "source", "mountPath": SOURCE_DIR}],
    }
    container: Obj = {
        "name": "probe",
        "image": settings.probe_image or spec.server.image,
        "command": ["/bin/sh", "-c", script],
        "env": [
            *model_env(spec),
            {"name": "PYTHONPATH", "value": SOURCE_DIR},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "resources": {"limits": dict(gpu), "requests": dict(gpu)},
        "volumeMounts": mounts,
    }
    pod: Obj = {
        **placement_fields(placement),
        "initContainers": [init],
        "containers": [container],
        "volumes": volumes,
    }
    deadline = int(settings.probe_timeout_seconds)
    return run_job(
        name, owner, run, step_labels, generation, settings, pod, 0, activeDeadlineSeconds=deadline
    )
