"""The results folder of one run: what the executors write and what the analysis and `quantbench report` read.

Layout (every file JSON, camelCase keys, the models named below)::

    <dir>/run.json                            RunInfo: benchmark, run id, times, GPU, the QuantBenchmark spec
    <dir>/probe.json                          optional: ProbeResult of the GPU roofline probe (quantbench.probe):
                                              its measured memory bandwidth sets the bandwidth floors
    <dir>/probes/<pool>.json                  optional: the same, for the variants on node pool <pool>
                                              (the operator probes each pool of a run)
    <dir>/<variant>/server.json               ServerInfo: how the variant's server ended (phase, reason),
                                              kernel, weight memory GiB, startup seconds, GPU, node
    <dir>/<variant>/loadgen-<workload>.json   LoadgenResult (quantbench_loadgen.results), one per workload
    <dir>/<variant>/accuracy.json             AccuracyResult (quantbench_loadgen.accuracy.results)

``<variant>`` is the variant's name from the spec and ``<workload>`` the workload's name. A variant with no
folder, or no server.json, counts as failed ("no results"). The Kubernetes operator and the local executor
(`quantbench run`) both write exactly this layout with the ``write_*`` functions below; the operator
gathers the Jobs' result ConfigMaps into it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError

from quantbench.api.v1alpha1 import QuantBenchmarkSpec, VariantPhase
from quantbench.probe.result import ProbeResult
from quantbench_loadgen.accuracy.results import AccuracyResult
from quantbench_loadgen.fidelity import FidelityResult
from quantbench_loadgen.results import LoadgenResult
from quantbench_loadgen.schema import ApiModel

RUN_FILE = "run.json"
PROBE_FILE = "probe.json"
PROBES_DIR = "probes"
SERVER_FILE = "server.json"
ACCURACY_FILE = "accuracy.json"
FIDELITY_FILE = "fidelity.json"
LOADGEN_PREFIX = "loadgen-"


class RunInfo(ApiModel):
    """run.json: which benchmark ran, when, on what, with which spec."""

    benchmark: str = Field(description="QuantBenchmark name.")
    run_id: str = Field(description="Run id, e.g. r20261123-0300.")
    started_at: datetime = Field(description="Run start (UTC).")
    finished_at: datetime | None = Field(default=None, description="Run end (UTC).")
    gpu: str | None = Field(
        default=None, description="GPU product the servers ran on, e.g. 'NVIDIA H100 80GB HBM3'."
    )
    memory_bandwidth_bytes_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Measured memory bandwidth (the CPU's, for a run served on the CPU); else the probe's, "
        "else the GPU table's.",
    )
    memory_bandwidth_source: str | None = Field(
        default=None, description="How memory_bandwidth_bytes_per_s was measured, e.g. 'CPU, measured: ...'."
    )
    spec: QuantBenchmarkSpec = Field(description="The QuantBenchmark spec the run executed.")


class ServerInfo(ApiModel):
    """<variant>/server.json: how the variant's vLLM server went."""

    phase: VariantPhase = Field(
        description="Succeeded, Failed or Unsupported (how the variant's steps ended)."
    )
    reason: str | None = Field(default=None, description="CamelCase reason when it did not succeed.")
    message: str | None = Field(default=None, description="What happened, for a person.")
    kernel: str | None = Field(default=None, description="Quantization kernel the server used.")
    weights_gib: float | None = Field(default=None, ge=0, description="Model weight memory, GiB.")
    startup_s: float | None = Field(default=None, ge=0, description="Server start to ready, seconds.")
    gpu: str | None = Field(default=None, description="GPU product of the node, when it differs per variant.")
    node: str | None = Field(default=None, description="Node (or host) the server ran on.")
    node_pool: str | None = Field(default=None, description="Node pool the server ran on.")


class ResultsError(ValueError):
    """The results folder is missing a file or holds an invalid one; the message names it."""


M = TypeVar("M", bound=BaseModel)


def _load(path: Path, model: type[M]) -> M:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: missing") from exc
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ResultsError(f"{path}: not a valid {model.__name__}: {fields}") from exc


@dataclass
class VariantResults:
    """Everything one variant produced."""

    name: str
    server: ServerInfo | None = None
    loadgen: dict[str, LoadgenResult] = field(default_factory=dict)  # by workload name
    accuracy: AccuracyResult | None = None
    fidelity: FidelityResult | None = None  # against the baseline (accuracy.fidelity)


@dataclass
class RunResults:
    """A whole results folder, loaded and validated."""

    info: RunInfo
    variants: dict[str, VariantResults]  # by variant name, in spec order
    probe: ProbeResult | None = None  # the run's GPU, or any GPU node's
    probes: dict[str, ProbeResult] = field(default_factory=dict)  # by node pool
    root: Path | None = None

    def probe_for(self, variant: str) -> ProbeResult | None:
        """The roofline probe of the GPU the variant ran on: its node pool's, else the run's."""
        vr = self.variants.get(variant)
        pool = vr.server.node_pool if vr is not None and vr.server is not None else None
        if pool is not None and pool in self.probes:
            return self.probes[pool]
        return self.probe

    @classmethod
    def load(cls, root: Path) -> RunResults:
        if not root.is_dir():
            raise ResultsError(f"{root}: not a folder (expected a results folder with run.json)")
        info = _load(root / RUN_FILE, RunInfo)
        probe = _load(root / PROBE_FILE, ProbeResult) if (root / PROBE_FILE).is_file() else None
        probes = {path.stem: _load(path, ProbeResult) for path in sorted((root / PROBES_DIR).glob("*.json"))}
        variants: dict[str, VariantResults] = {}
        for variant in info.spec.variants:
            folder = root / variant.name
            vr = VariantResults(name=variant.name)
            if (folder / SERVER_FILE).is_file():
                vr.server = _load(folder / SERVER_FILE, ServerInfo)
            for workload in info.spec.workloads:
                path = folder / f"{LOADGEN_PREFIX}{workload.name}.json"
                if path.is_file():
                    vr.loadgen[workload.name] = _load(path, LoadgenResult)
            if (folder / ACCURACY_FILE).is_file():
                vr.accuracy = _load(folder / ACCURACY_FILE, AccuracyResult)
            if (folder / FIDELITY_FILE).is_file():
                vr.fidelity = _load(folder / FIDELITY_FILE, FidelityResult)
            variants[variant.name] = vr
        return cls(info=info, variants=variants, probe=probe, probes=probes, root=root)

    def write(self, root: Path) -> None:
        """Write the whole folder (what `load` reads back)."""
        write_run_info(root, self.info)
        if self.probe is not None:
            write_probe_result(root, self.probe)
        for pool, probe in self.probes.items():
            write_probe_result(root, probe, pool)
        for name, vr in self.variants.items():
            if vr.server is not None:
                write_server_info(root, name, vr.server)
            for result in vr.loadgen.values():
                write_loadgen_result(root, name, result)
            if vr.accuracy is not None:
                write_accuracy_result(root, name, vr.accuracy)


def _write(path: Path, model: ApiModel) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    return path


def write_run_info(root: Path, info: RunInfo) -> Path:
    return _write(root / RUN_FILE, info)


def write_probe_result(root: Path, probe: ProbeResult, pool: str | None = None) -> Path:
    """probe.json, or probes/<pool>.json for a node pool's probe."""
    path = root / PROBES_DIR / f"{pool}.json" if pool is not None else root / PROBE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(probe.to_json(), encoding="utf-8")
    return path


def write_server_info(root: Path, variant: str, server: ServerInfo) -> Path:
    return _write(root / variant / SERVER_FILE, server)


def write_loadgen_result(root: Path, variant: str, result: LoadgenResult) -> Path:
    return _write(root / variant / f"{LOADGEN_PREFIX}{result.workload_name}.json", result)


def write_accuracy_result(root: Path, variant: str, result: AccuracyResult) -> Path:
    return _write(root / variant / ACCURACY_FILE, result)


def write_fidelity_result(root: Path, variant: str, result: FidelityResult) -> Path:
    return _write(root / variant / FIDELITY_FILE, result)
