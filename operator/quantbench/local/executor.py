"""Run a QuantBenchmark on this machine: one vLLM server per variant, one after another, the same
load-generator and accuracy commands the Kubernetes Jobs run, and the same results folder, summary and report.

On the CPU the next variant's server starts while the current one runs its accuracy and fidelity steps (whose
results do not depend on speed), so that its start-up (mostly Python imports) overlaps them, when the servers'
OpenMP threads (OMP_NUM_THREADS) leave a core free for it: a starting server beside a server whose OpenMP threads
fill every core slows that server's decoding several-fold (a thread that waits at an OpenMP barrier spins on its
core while the thread it waits for is preempted), so the overlap would cost more than it hides. The timed
workloads always run with one server alone. On a GPU servers never overlap.

Every failure of a variant (unsupported precision here, a server that exits or never becomes healthy, a
workload or accuracy step that fails) is written into that variant's server.json with a reason and a message;
the other variants still run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from quantbench.analysis.run_results import (
    FIDELITY_FILE,
    RunInfo,
    ServerInfo,
    write_run_info,
    write_server_info,
)
from quantbench.api.v1alpha1 import QuantBenchmark, QuantBenchmarkSpec, Variant, VariantPhase
from quantbench.failures import Reason
from quantbench.gpus import unsupported_precision
from quantbench.local.progress import Display, loadgen_count, tqdm_count
from quantbench.local.server import ServerProcess, ServerStartError, free_port, log_tail, start_server
from quantbench.manifests.jobs import accuracy_args, fidelity_args, loadgen_args, sequential_args
from quantbench.manifests.probe import probe_args
from quantbench.manifests.server import model_of, server_args
from quantbench.naming import run_id as new_run_id
from quantbench.plan import kernel_label
from quantbench.probe.lend import package_dirs
from quantbench.probe.result import Bandwidth
from quantbench.vllm_log import weights_gib_from_log
from quantbench_loadgen.schema import duration_seconds


@dataclass(frozen=True)
class Device:
    """What this machine serves on: a GPU product name, or None for the CPU."""

    gpu: str | None = None

    @property
    def label(self) -> str:
        return self.gpu or "CPU"


def detect_device() -> Device:
    """The first NVIDIA GPU that nvidia-smi reports, else the CPU."""
    if shutil.which("nvidia-smi") is None:
        return Device()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return Device()
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return Device(names[0] if names else None)


def unsupported_here(variant: Variant, device: Device) -> str | None:
    """Why this variant cannot run on this machine, or None (the operator's check, see plan.plan_run)."""
    return unsupported_precision(
        variant.precision, kernel_label(variant), device.gpu, on_cpu=device.gpu is None
    )


@dataclass
class LocalSettings:
    """How `quantbench run` executes, beyond the spec."""

    out_dir: Path
    vllm_python: str = sys.executable
    jobs_python: str = sys.executable  # has quantbench_loadgen
    accuracy_python: str = sys.executable  # has quantbench_loadgen[accuracy] (lm-eval)
    gsm8k_dir: str | None = None
    dataset_paths: dict[str, str] = field(default_factory=dict)  # workload name -> local dataset path
    server_env: dict[str, str] = field(default_factory=dict)
    device: Device = field(default_factory=Device)
    log: Callable[[str], None] = print
    display: Display | None = None  # the live progress of `quantbench run`; None: stage changes are logged
    # On the CPU, start the next server during this one's untimed steps (when a core is free: overlaps_starts).
    overlap_starts: bool = True
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))  # CPU cores this run may use

    def stage(self, variant: str, stage: str, detail: str = "") -> None:
        """A variant entered a stage (starting server, a workload, accuracy, or its final phase)."""
        if self.display is None:
            self.log(f"{variant}: {stage}" + (f" ({detail})" if detail else ""))
            return
        self.display.progress.set_stage(variant, stage, detail)
        self.display.refresh(variant)

    def count(self, variant: str, detail: str, done: int | None, total: int | None) -> None:
        """Progress inside the current stage: requests or questions done out of the planned number."""
        if self.display is not None:
            self.display.progress.set_count(variant, detail, done, total)
            self.display.refresh()


def local_server_argv(spec: QuantBenchmarkSpec, variant: Variant, python: str, port: int) -> list[str]:
    """The variant's server command: the operator's vLLM flags, bound to loopback on `port`."""
    args = server_args(
        spec.model_copy(update={"server": spec.server.model_copy(update={"port": port})}), variant
    )
    args[args.index("--host") + 1] = "127.0.0.1"
    return [python, "-m", "vllm.entrypoints.openai.api_server", *args]


def loadgen_argv(
    settings: LocalSettings, url: str, model: str, workload: Path, output: Path, progress_file: Path
) -> list[str]:
    """The workload Job's command, run here, keeping its live counters in `progress_file` for the display."""
    return [
        settings.jobs_python,
        "-m",
        "quantbench_loadgen.cli",
        *loadgen_args(url, model, str(workload), str(output)),
        "--progress-file",
        str(progress_file),
    ]


def accuracy_argv(
    settings: LocalSettings, spec: QuantBenchmarkSpec, url: str, model: str, spec_file: Path, output: Path
) -> list[str]:
    """The accuracy Job's command, run here; a local checkpoint carries its tokenizer (no server round trips)."""
    args = accuracy_args(
        url,
        model,
        str(spec_file),
        spec.server.max_model_len,
        str(output),
        dataset_path=settings.gsm8k_dir,
        tokenizer=model if Path(model).is_dir() else None,
    )
    return [settings.accuracy_python, "-m", "quantbench_loadgen.accuracy", *args]


# The baseline's prompts and responses (megabytes at GSM8K size), which the other variants screen with.
RESPONSES_FILE = "accuracy-responses.json"


def sequential_accuracy_args(
    settings: LocalSettings, spec: QuantBenchmarkSpec, variant: str, root: Path
) -> list[str]:
    """accuracy.sequential: the baseline keeps its responses (for the variants' screening); a variant asks the
    baseline's questions in chunks and stops once decided, screening first when the responses are there (the
    Jobs' arguments, built by the same function)."""
    if spec.accuracy is None or spec.accuracy.sequential is None:
        return []
    baseline_result = root / spec.baseline / "accuracy.json"
    baseline_responses = root / spec.baseline / RESPONSES_FILE
    screen = spec.accuracy.sequential.screen
    if variant == spec.baseline:
        return sequential_args(responses_out=str(baseline_responses)) if screen else []
    if not baseline_result.is_file():
        settings.log(f"{variant}: no baseline accuracy result: every planned question")
        return []
    fidelity = root / variant / FIDELITY_FILE
    return sequential_args(
        baseline_result=str(baseline_result),
        baseline_responses=[str(baseline_responses)] if screen and baseline_responses.is_file() else [],
        unscreened=f"the baseline wrote no {RESPONSES_FILE}" if screen else None,
        fidelity_result=str(fidelity) if fidelity.is_file() else None,
    )


FIDELITY_REFERENCE = "fidelity-reference.json"


def fidelity_argv(
    settings: LocalSettings, spec: QuantBenchmarkSpec, variant: str, url: str, model: str, root: Path
) -> list[str] | None:
    """accuracy.fidelity: the baseline writes the reference (its greedy answers and top-k log-probabilities
    on GSM8K questions), every other variant is compared with it; None when there is nothing to run."""
    fid = spec.accuracy.fidelity if spec.accuracy is not None else None
    if fid is None:
        return None
    reference = root / spec.baseline / FIDELITY_REFERENCE
    head = [settings.jobs_python, "-m", "quantbench_loadgen.cli"]
    if variant == spec.baseline:
        if settings.gsm8k_dir is None:
            settings.log("fidelity: no GSM8K folder (--gsm8k): skipped")
            return None
        return [*head, *fidelity_args(url, model, fid, str(reference), None, settings.gsm8k_dir)]
    if not reference.is_file():
        settings.log(f"{variant}: fidelity skipped: the baseline wrote no reference")
        return None
    out = root / variant / FIDELITY_FILE
    return [*head, *fidelity_args(url, model, fid, str(reference), str(out))]


def checkpoint_gib(model: str) -> float | None:
    """Size of a local checkpoint's weight files, GiB: the weight memory where the server log gives none
    (vLLM's CPU backend does not report it). None for a hub id or a folder without safetensors."""
    files = list(Path(model).glob("*.safetensors")) if Path(model).is_dir() else []
    return round(sum(f.stat().st_size for f in files) / 2**30, 4) if files else None


# Seconds a server gets to exit after SIGTERM before it is killed. Its results are written by then; vLLM CPU 0.32's
# API server now and then hangs for the whole grace after its engine has stopped (seen here: 15 s).
STOP_GRACE_S = 5.0


class StepFailed(RuntimeError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _run_step(
    variant: str,
    name: str,
    argv: list[str],
    log_path: Path,
    settings: LocalSettings,
    poll: Callable[[], None] | None = None,
) -> None:
    """Run one step's command with its output in `log_path`; `poll` reads its progress twice a second."""
    settings.stage(variant, name)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if poll is not None:
                    poll()
    if code != 0:
        raise StepFailed(
            str(Reason.JOB_FAILED),
            f"{name} exited with code {code}; log {log_path}:\n{log_tail(log_path, 15)}",
        )


def _workload_poll(variant: str, progress_file: Path, settings: LocalSettings) -> Callable[[], None]:
    def poll() -> None:
        counts = loadgen_count(progress_file)
        if counts is not None:
            step, done, planned = counts
            settings.count(variant, step, done, planned)

    return poll


def _accuracy_poll(variant: str, log_path: Path, settings: LocalSettings) -> Callable[[], None]:
    def poll() -> None:
        counts = tqdm_count(log_path)
        if counts is not None:
            settings.count(variant, "questions", *counts)

    return poll


def launch_server(
    spec: QuantBenchmarkSpec, variant: Variant, root: Path, settings: LocalSettings
) -> ServerProcess:
    """Start the variant's server process (not waiting for it to be ready)."""
    folder = root / variant.name
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings.stage(
        variant.name,
        "starting server",
        f"{variant.precision}, kernel {kernel_label(variant) or 'none'}, port {port}",
    )
    return start_server(
        variant.name,
        local_server_argv(spec, variant, settings.vllm_python, port),
        folder / "server.log",
        env=server_env(spec, settings),
        port=port,
    )


def run_variant(
    spec: QuantBenchmarkSpec,
    variant: Variant,
    root: Path,
    settings: LocalSettings,
    server: ServerProcess | None = None,
    after_timed: Callable[[], None] | None = None,
) -> ServerInfo:
    """Serve one variant (on `server` when it was started already), run its steps, stop its server; return how
    it went (also on failure). `after_timed` is called once the timed workloads are done, before the accuracy
    and fidelity steps, whose results do not depend on how fast the server answers."""
    folder = root / variant.name
    folder.mkdir(parents=True, exist_ok=True)
    kernel = kernel_label(variant)
    base = {"kernel": kernel, "gpu": settings.device.gpu, "node": socket.gethostname()}
    why = unsupported_here(variant, settings.device)
    if why is not None:
        settings.log(f"{variant.name}: unsupported here: {why}")
        settings.stage(variant.name, VariantPhase.UNSUPPORTED.value)
        return ServerInfo(
            phase=VariantPhase.UNSUPPORTED, reason=str(Reason.UNSUPPORTED_PRECISION), message=why, **base
        )
    model = model_of(spec, variant)
    early = server is not None
    if server is None:
        server = launch_server(spec, variant, root, settings)
    try:
        try:
            startup = server.wait_ready(duration_seconds(spec.server.startup_timeout))
        except ServerStartError as exc:
            timed_out = server.process.returncode in (None, -15, -9) and "not healthy after" in str(exc)
            reason = Reason.STARTUP_TIMEOUT if timed_out else Reason.CRASH_LOOP
            settings.log(f"{variant.name}: server failed: {exc}")
            settings.stage(variant.name, VariantPhase.FAILED.value, str(reason))
            return ServerInfo(phase=VariantPhase.FAILED, reason=str(reason), message=str(exc), **base)
        weights = weights_gib_from_log(server.log_path.read_text(errors="replace")) or checkpoint_gib(model)
        overlap = ", started during the previous variant's untimed steps" if early else ""
        settings.log(f"{variant.name}: ready in {startup:.1f} s (weights {weights} GiB{overlap})")
        info = {**base, "startup_s": round(startup, 2), "weights_gib": weights}
        try:
            for workload in spec.workloads:
                wfile = folder / f"workload-{workload.name}.yaml"
                data = workload.to_wire()
                if workload.name in settings.dataset_paths and "dataset" in data:
                    data["dataset"] = {**data["dataset"], "path": settings.dataset_paths[workload.name]}
                    data["dataset"].pop("huggingFace", None)
                wfile.write_text(yaml.safe_dump(data))
                out = folder / f"loadgen-{workload.name}.json"
                progress_file = folder / f"loadgen-{workload.name}.progress.json"
                argv = loadgen_argv(settings, server.url, model, wfile, out, progress_file)
                _run_step(
                    variant.name,
                    f"workload {workload.name}",
                    argv,
                    folder / f"loadgen-{workload.name}.log",
                    settings,
                    _workload_poll(variant.name, progress_file, settings),
                )
                progress_file.unlink(missing_ok=True)
            if after_timed is not None:
                after_timed()
            if spec.accuracy is not None:
                # Fidelity first: its greedy answer disagreement sizes a sequential evaluation's chunks.
                fidelity = fidelity_argv(settings, spec, variant.name, server.url, model, root)
                if fidelity is not None:
                    _run_step(variant.name, "fidelity", fidelity, folder / "fidelity.log", settings)
                afile = folder / "accuracy-spec.yaml"
                afile.write_text(yaml.safe_dump(spec.accuracy.to_wire()))
                argv = accuracy_argv(settings, spec, server.url, model, afile, folder / "accuracy.json")
                argv += sequential_accuracy_args(settings, spec, variant.name, root)
                log_path = folder / "accuracy.log"
                _run_step(
                    variant.name,
                    "accuracy",
                    argv,
                    log_path,
                    settings,
                    _accuracy_poll(variant.name, log_path, settings),
                )
        except StepFailed as exc:
            if server.process.poll() is not None:
                reason, message = Reason.SERVER_LOST, f"the server exited during the run: {exc.message}"
            else:
                reason, message = Reason(exc.reason), exc.message
            settings.log(f"{variant.name}: {reason}: {message}")
            settings.stage(variant.name, VariantPhase.FAILED.value, str(reason))
            return ServerInfo(phase=VariantPhase.FAILED, reason=str(reason), message=message, **info)
        settings.stage(variant.name, VariantPhase.SUCCEEDED.value)
        return ServerInfo(phase=VariantPhase.SUCCEEDED, **info)
    finally:
        server.stop(STOP_GRACE_S)


def probe_argv(settings: LocalSettings, model_dir: Path, output: Path) -> list[str]:
    """The roofline probe, run with the vLLM environment's Python (it has torch)."""
    return [
        settings.vllm_python,
        "-m",
        "quantbench.probe",
        *probe_args(str(model_dir / "config.json"), str(output)),
    ]


def _lent_env() -> dict[str, str]:
    """The environment for a quantbench module run by the vLLM environment's Python, which has torch but not
    quantbench: our source is lent on its PYTHONPATH."""
    sources = {str(folder.parent) for folder in package_dirs()}
    paths = [*sorted(sources), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _run_logged(argv: list[str], log_path: Path) -> int:
    with log_path.open("ab") as log:
        return subprocess.run(
            argv, stdout=log, stderr=subprocess.STDOUT, env=_lent_env(), check=False
        ).returncode


def run_probe(spec: QuantBenchmarkSpec, root: Path, settings: LocalSettings) -> Path | None:
    """spec.probe on a GPU: measure the roofline of this machine's GPU for the model into <root>/probe.json,
    which the analysis reads. Skipped, with the reason logged, where it cannot run; a probe failure never fails
    the run."""
    model_dir = Path(spec.model)
    if not (model_dir / "config.json").is_file():
        settings.log(f"probe: skipped, {spec.model} is not a local model folder with a config.json")
        return None
    out = root / "probe.json"
    argv = probe_argv(settings, model_dir, out)
    settings.log(f"probe: {' '.join(argv[1:])}")
    code = _run_logged(argv, root / "probe.log")
    if code != 0 or not out.is_file():
        settings.log(f"probe: failed (exit {code}), the run goes on without it; log {root / 'probe.log'}")
        out.unlink(missing_ok=True)
        return None
    return out


def run_cpu_probe(root: Path, settings: LocalSettings) -> Bandwidth | None:
    """spec.probe on the CPU: this machine's streaming read bandwidth, the floor of a CPU-served variant.
    None, with the reason logged, when it cannot be measured; that never fails the run."""
    out = root / "cpu-bandwidth.json"
    argv = [settings.vllm_python, "-m", "quantbench.probe.cpu", "--out", str(out)]
    settings.log("probe: measuring the CPU's streaming read bandwidth")
    code = _run_logged(argv, root / "probe.log")
    try:
        bandwidth = Bandwidth.model_validate_json(out.read_text())
    except (OSError, ValueError):
        settings.log(f"probe: failed (exit {code}), the run goes on without it; log {root / 'probe.log'}")
        return None
    settings.log(f"probe: CPU streaming read {bandwidth.bytes_per_s / 1e9:.1f} GB/s")
    return bandwidth


def run_local(bench: QuantBenchmark, settings: LocalSettings) -> tuple[Path, dict[str, ServerInfo]]:
    """Run every variant in spec order; return the results folder (layout of quantbench.analysis.run_results)
    and how each variant's server went."""
    spec = bench.spec
    started = datetime.now(UTC)
    run = new_run_id(started)
    root = settings.out_dir / bench.metadata.name / run
    info = RunInfo(
        benchmark=bench.metadata.name, run_id=run, started_at=started, gpu=settings.device.gpu, spec=spec
    )
    write_run_info(root, info)
    settings.log(f"run {run} of {bench.metadata.name} on {settings.device.label}: results in {root}")
    if spec.probe and settings.device.gpu is not None:
        run_probe(spec, root, settings)
    elif spec.probe:
        bandwidth = run_cpu_probe(root, settings)
        if bandwidth is not None:
            info = info.model_copy(
                update={
                    "memory_bandwidth_bytes_per_s": bandwidth.bytes_per_s,
                    "memory_bandwidth_source": f"CPU, measured: {bandwidth.method}",
                }
            )
            write_run_info(root, info)
    servers: dict[str, ServerInfo] = {}
    # The baseline first: a sequential accuracy evaluation stops each variant against its outcomes.
    order = sorted(spec.variants, key=lambda v: v.name != spec.baseline)
    prestarted: dict[str, ServerProcess] = {}
    overlap = overlaps_starts(settings, spec)
    if settings.device.gpu is None and settings.overlap_starts:
        settings.log(f"servers: {overlap_words(settings, spec)}")
    try:
        for i, variant in enumerate(order):
            following = next_to_start(order[i + 1 :], settings) if overlap else None

            def start_following(following: Variant | None = following) -> None:
                if following is not None and following.name not in prestarted:
                    prestarted[following.name] = launch_server(spec, following, root, settings)
                    prestarted[following.name].watch_ready()

            server = prestarted.pop(variant.name, None)
            servers[variant.name] = run_variant(spec, variant, root, settings, server, start_following)
            write_server_info(root, variant.name, servers[variant.name])
    finally:  # a server started early for a variant that never ran (an earlier one failed)
        for server in prestarted.values():
            server.stop(STOP_GRACE_S)
    write_run_info(root, info.model_copy(update={"finished_at": datetime.now(UTC)}))
    return root, servers


def server_env(spec: QuantBenchmarkSpec, settings: LocalSettings) -> dict[str, str]:
    """The environment a server gets besides this process's: spec.server.env, then --server-env over it."""
    return {**{e.name: e.value for e in spec.server.env}, **settings.server_env}


def server_threads(settings: LocalSettings, spec: QuantBenchmarkSpec) -> int | None:
    """The servers' OpenMP threads (OMP_NUM_THREADS of spec.server.env or --server-env; None: not set, or not a
    positive whole number)."""
    value = server_env(spec, settings).get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def overlaps_starts(settings: LocalSettings, spec: QuantBenchmarkSpec) -> bool:
    """Whether the next variant's server starts while this one runs its accuracy and fidelity steps: on the CPU,
    where two servers fit (each has its own KV cache size), unless turned off, and only when the servers'
    OpenMP threads leave at least one of this run's cores free for the starting server. Measured on 2 cores
    with 2 threads, the overlap made the running server's fidelity step 5x slower (54 s against ~11 s) and hid
    a start of ~30 s: a loss. Unset OMP_NUM_THREADS counts as every core (torch's default). On a GPU the
    second server would take the memory the first one holds."""
    if not settings.overlap_starts or settings.device.gpu is not None:
        return False
    threads = server_threads(settings, spec)
    return threads is not None and threads < settings.cores


def overlap_words(settings: LocalSettings, spec: QuantBenchmarkSpec) -> str:
    """Why the CPU servers start as they do, for the run's log."""
    threads = server_threads(settings, spec)
    threads_text = f"{threads} OpenMP threads" if threads is not None else "OpenMP threads on every core"
    if overlaps_starts(settings, spec):
        return (
            f"the next one starts during this one's accuracy and fidelity steps ({threads_text}, "
            f"{settings.cores} cores: a core is left for it)"
        )
    return (
        f"one after another ({threads_text} of {settings.cores} cores leave none for a starting server, "
        "which would slow the running one's steps)"
    )


def next_to_start(rest: list[Variant], settings: LocalSettings) -> Variant | None:
    """The next variant in `rest` that has a server to start here (unsupported ones have none)."""
    return next((v for v in rest if unsupported_here(v, settings.device) is None), None)
