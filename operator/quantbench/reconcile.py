"""One reconcile pass of a run, as a pure function: what is observed in the cluster -> what to do next.

The driver (quantbench.driver) lists the run's children, calls `decide`, applies the actions (idempotent
creates and deletes), records the events and patches the status. Because the decision is made from what
exists (Deployments, pods, Jobs, result ConfigMaps) and not from memory, an operator that was killed at any
point makes the same decision again after a restart: no child is created twice (names are deterministic
and creation tolerates "already exists"), no result is lost (results live in ConfigMaps until the run's
history entry is pruned).

With spec.probe, each node pool's roofline probe Job runs first (results ConfigMap first, done when it holds
``result.json``); the pool's variants wait for it. A probe that fails, or cannot get a GPU within
server.startupTimeout, is recorded with its reason and the variants go on without it.

Per variant (in its lane's turn): create the server Deployment and Service; wait until its pod is Ready
(or classify why not: unschedulable, image pull, crash loop, OOM, startup timeout); then one Job after the
other (results ConfigMap first), each done when its ConfigMap holds ``result.json``; then the variant
succeeds and its server is deleted. A failure ends only that variant: its server and unfinished Jobs are
deleted so the GPUs are free, and the next variant of the lane starts.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError

from quantbench import sizes
from quantbench.api.v1alpha1 import (
    Placement,
    ProbePhase,
    ProbeStatus,
    QuantBenchmarkSpec,
    VariantPhase,
    VariantStatus,
    quantity,
)
from quantbench.failures import (
    Failure,
    Reason,
    classify_pod_failure,
    classify_unschedulable,
    job_failure,
    job_finished,
    no_node_message,
    pod_ready,
    pod_ready_time,
    startup_timed_out,
    startup_timeout_failure,
    unschedulable_message,
)
from quantbench.manifests import jobs as job_manifests
from quantbench.manifests import probe as probe_manifests
from quantbench.manifests import rbac
from quantbench.manifests import server as server_manifests
from quantbench.manifests.common import Owner
from quantbench.manifests.jobs import Screening
from quantbench.naming import (
    LABEL_STEP,
    LABEL_VARIANT,
    STEP_ACCURACY,
    STEP_PROBE,
    STEP_SERVER,
    job_name,
    probe_name,
    probe_step,
    responses_part_name,
    server_name,
)
from quantbench.objects import (
    Condition,
    ConfigMap,
    Deployment,
    Job,
    Obj,
    Pod,
    conditions_of,
    container_statuses,
    created_at,
    labels_of,
    meta,
    name_of,
    node_of,
    pod_phase,
)
from quantbench.plan import (
    OPEN_PROBE_PHASES,
    TERMINAL_PHASES,
    BaselineUse,
    PoolInfo,
    ProbePlan,
    RunPlan,
    Step,
    StepKind,
    VariantPlan,
    admitted,
    baseline_use,
    waiting_for_probe,
)
from quantbench.probe.result import ProbeResult
from quantbench.settings import OperatorSettings
from quantbench_loadgen.accuracy.results import AccuracyResult
from quantbench_loadgen.accuracy.screening import PublishedResponses
from quantbench_loadgen.fidelity import FidelityReference, FidelityResult
from quantbench_loadgen.publish import RESPONSES_ANNOTATION
from quantbench_loadgen.results import LoadgenResult
from quantbench_loadgen.schema import duration_seconds


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def image_digest(pod: Pod) -> str | None:
    """The image the server container runs, by digest (``imageID`` of its container status), if reported."""
    for cs in container_statuses(pod):
        if cs.get("name") == server_manifests.CONTAINER:
            return (cs.get("imageID") or "").removeprefix("docker-pullable://") or None
    return None


@dataclass(frozen=True)
class Create:
    obj: Obj


@dataclass(frozen=True)
class Delete:
    kind: str
    name: str


@dataclass(frozen=True)
class Note:
    """An Event to record on the QuantBenchmark."""

    type: str  # Normal or Warning
    reason: str
    message: str


Action = Create | Delete


@dataclass(frozen=True)
class RunContext:
    owner: Owner
    run_id: str
    generation: int
    spec: QuantBenchmarkSpec
    plan: RunPlan
    settings: OperatorSettings
    started_at: datetime | None = None
    deadline_s: float | None = None  # the run's deadline (quantbench.deadlines.run_deadline_s)


@dataclass
class Observed:
    """The run's children as listed from the API (Jobs listed before ConfigMaps: a Complete Job's result is
    then always visible)."""

    now: datetime
    deployments: dict[str, Deployment] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    pods: list[Pod] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    configmaps: dict[str, ConfigMap] = field(default_factory=dict)
    pools: Mapping[str, PoolInfo] | None = None
    node_products: Mapping[str, str] = field(default_factory=dict)
    node_drivers: Mapping[str, str] = field(default_factory=dict)
    # Children the API server refused to create (by object name), and why pods of a Job (by Job name)
    # could not be created (FailedCreate Events: PodSecurity, ResourceQuota).
    rejected: Mapping[str, Failure] = field(default_factory=dict)
    pod_create_errors: Mapping[str, str] = field(default_factory=dict)

    def pods_of(self, variant: str | None, step: str) -> list[Pod]:
        """Live pods of a variant's step (variant None: a run-wide step such as a probe)."""
        out = []
        for p in self.pods:
            lab = labels_of(p)
            if (
                lab.get(LABEL_VARIANT) == variant
                and lab.get(LABEL_STEP) == step
                and not meta(p).get("deletionTimestamp")
            ):
                out.append(p)
        return out


@dataclass
class Decision:
    variants: list[VariantStatus]
    probes: list[ProbeStatus] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    weights_from: dict[str, str] = field(
        default_factory=dict
    )  # variant -> ready server pod to read the log of
    needs_pools: bool = False  # a server pod is unschedulable: list the nodes and decide again

    @property
    def finished(self) -> bool:
        return all(v.phase in TERMINAL_PHASES for v in self.variants)


SKIPPED_KEY = "skipped"  # a step's results ConfigMap that says why the step ran no Job


def has_result(cm: ConfigMap | None) -> bool:
    """Whether a Job published its result into the ConfigMap (as text, or gzip-compressed)."""
    if cm is None:
        return False
    return bool((cm.get("data") or {}).get(job_manifests.RESULT_KEY)) or bool(
        (cm.get("binaryData") or {}).get(job_manifests.RESULT_GZ_KEY)
    )


def result_of(cm: ConfigMap | None) -> str | None:
    """The result a Job published: ``data.result.json``, or ``binaryData.result.json.gz`` decompressed (an
    undecodable one reads as text that says so, which no result model accepts)."""
    if cm is None:
        return None
    value = (cm.get("data") or {}).get(job_manifests.RESULT_KEY)
    if value:
        return value
    packed = (cm.get("binaryData") or {}).get(job_manifests.RESULT_GZ_KEY)
    if not packed:
        return None
    try:
        return gzip.decompress(base64.b64decode(packed, validate=True)).decode()
    except (ValueError, OSError, EOFError) as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return f"binaryData.{job_manifests.RESULT_GZ_KEY} is not gzip-compressed text: {exc}"


def screening_of(
    spec: QuantBenchmarkSpec, benchmark: str, run: str, configmaps: Mapping[str, ConfigMap]
) -> Screening | None:
    """A sequential variant's screening (pure): None when the spec turns it off, else the ConfigMaps holding
    the pieces of the baseline's published responses, in order, or why it has none (it then generates every
    question, as without screening)."""
    if not sizes.screens(spec):
        return None
    why = sizes.unscreened(spec)
    if why is not None:
        return Screening(unscreened=why)
    cm = configmaps.get(job_name(benchmark, run, spec.baseline, STEP_ACCURACY))
    text = ((cm or {}).get("metadata") or {}).get("annotations", {}).get(RESPONSES_ANNOTATION)
    if text is None:
        return Screening(unscreened="the baseline's accuracy Job recorded nothing about its responses")
    try:
        record = PublishedResponses.model_validate_json(text)
    except ValidationError as exc:
        return Screening(
            unscreened=f"the baseline's record of its responses is not valid: {exc.errors()[0]['msg']}"
        )
    if record.parts == 0:
        return Screening(
            unscreened=f"the baseline's responses were not published: {record.reason or 'no reason recorded'}"
        )
    names = tuple(responses_part_name(benchmark, run, spec.baseline, i) for i in range(record.parts))
    for name in names:
        if not ((configmaps.get(name) or {}).get("binaryData") or {}).get(job_manifests.RESPONSES_PART_KEY):
            return Screening(unscreened=f"configmap {name} holds no piece of the baseline's responses")
    return Screening(mount=names)


def skipped_of(cm: ConfigMap | None) -> str | None:
    """Why the step ran no Job (its ConfigMap's ``skipped`` key), or None."""
    return (cm.get("data") or {}).get(SKIPPED_KEY) if cm is not None else None


def parse_probe_result(text: str) -> tuple[ProbeResult | None, str | None]:
    """A probe Job's result, or what is wrong with it."""
    try:
        return ProbeResult.model_validate_json(text), None
    except (ValidationError, ValueError) as exc:
        return None, str(exc).splitlines()[0][:300]


def validate_result(step_kind: StepKind, text: str, baseline: bool = False) -> str | None:
    """None when the Job's result parses as its model, else what is wrong (``baseline``: the result of the
    baseline's Job, whose fidelity step writes the reference rather than a comparison)."""
    try:
        if step_kind == StepKind.ACCURACY:
            AccuracyResult.model_validate_json(text)
        elif step_kind == StepKind.FIDELITY:
            (FidelityReference if baseline else FidelityResult).model_validate_json(text)
        else:
            LoadgenResult.model_validate_json(text)
    except (ValidationError, json.JSONDecodeError, ValueError) as exc:
        return str(exc).splitlines()[0][:300]
    return None


def run_overdue(ctx: RunContext, now: datetime) -> Failure | None:
    """The run-level timeout: a Failure once the run has been going longer than its deadline."""
    if ctx.started_at is None or ctx.deadline_s is None:
        return None
    if (now - ctx.started_at).total_seconds() <= ctx.deadline_s:
        return None
    return Failure(
        Reason.RUN_TIMEOUT,
        f"the run did not finish within its deadline ({ctx.deadline_s:.0f} s, spec.timeouts.run); "
        "the variant was stopped and its GPUs released",
    )


def replica_failure(dep: Deployment) -> str | None:
    """Why the Deployment's ReplicaSet cannot create the server pod (quota, admission), or None."""
    cond = conditions_of(dep).get("ReplicaFailure", Condition())
    if cond.get("status") == "True":
        return str(cond.get("message") or cond.get("reason") or "pods cannot be created")
    return None


def permanently_refused(message: str) -> bool:
    """A pod refusal that waiting cannot cure: the namespace's PodSecurity level or an admission policy.
    (A ResourceQuota refusal can clear when other pods end: it is waited for up to the step's deadline.)"""
    return "exceeded quota" not in message and "forbidden" in message.lower()


def job_deadline_failure(job: Job, pod_error: str | None) -> Failure | None:
    """A Job that the Job controller failed for running past activeDeadlineSeconds."""
    cond = conditions_of(job).get("Failed", Condition())
    if cond.get("status") != "True" or cond.get("reason") != "DeadlineExceeded":
        return None
    name = name_of(job)
    deadline = (cast(dict[str, Any], job).get("spec") or {}).get("activeDeadlineSeconds")
    why = f"; its pods could not be created: {pod_error}" if pod_error else ""
    return Failure(
        Reason.STEP_TIMEOUT,
        f"job {name} ran past its deadline ({deadline} s, spec.timeouts.step){why}; "
        f"read its log: kubectl logs job/{name}",
    )


def initial_statuses(plan: RunPlan) -> list[VariantStatus]:
    """Every planned variant, Pending: the status a run starts with."""
    return [
        VariantStatus(
            name=vp.variant,
            precision=vp.precision,
            phase=VariantPhase.PENDING,
            node_pool=vp.pool,
            gpu=vp.gpu_product,
            kernel=vp.kernel,
        )
        for vp in plan.variants
    ]


def initial_probe_statuses(plan: RunPlan) -> list[ProbeStatus]:
    """Every planned probe, Pending."""
    return [ProbeStatus(node_pool=p.pool, phase=ProbePhase.PENDING) for p in plan.probes]


def wanted(placement: Placement) -> str:
    """What a server pod waits for, in words: free GPUs, or CPUs and memory."""
    if placement.on_cpu:
        cpu, memory = server_manifests.cpu_requests(placement)
        return f"{cpu} free CPUs and {memory} of memory"
    return f"{placement.gpus} free {placement.gpu_resource}"


class _Pass:
    """Decides for one part of the run; collects actions and notes into the shared decision."""

    def __init__(self, ctx: RunContext, obs: Observed, decision: Decision):
        self.ctx = ctx
        self.obs = obs
        self.d = decision


class _ProbePass(_Pass):
    """Decides for one node pool's roofline probe."""

    def __init__(
        self, ctx: RunContext, obs: Observed, decision: Decision, pp: ProbePlan, status: ProbeStatus
    ):
        super().__init__(ctx, obs, decision)
        self.pp = pp
        self.s = status
        self.step = probe_step(pp.pool)
        self.name = probe_name(ctx.owner.name, ctx.run_id, pp.pool)
        self.where = f"pool {pp.pool}" if pp.pool else "any GPU node"

    def update(self, **changes: Any) -> ProbeStatus:
        self.s = self.s.model_copy(update=changes)
        return self.s

    def stop_job(self) -> None:
        job = self.obs.jobs.get(self.name)
        if job is not None and job_finished(job) is None:
            self.d.actions.append(Delete("Job", self.name))

    def end(self, phase: ProbePhase, reason: str, message: str) -> ProbeStatus:
        self.d.notes.append(
            Note(
                "Warning",
                f"Probe{phase}",
                f"roofline probe of {self.where}: {message}; the variants go on without it",
            )
        )
        self.stop_job()
        return self.update(phase=phase, reason=reason, message=message)

    def run(self) -> ProbeStatus:
        if self.s.phase not in OPEN_PROBE_PHASES:
            self.stop_job()
            return self.s
        if self.pp.skipped is not None:
            return self.end(ProbePhase.SKIPPED, "NoGPU", self.pp.skipped)
        ctx = self.ctx
        refused = self.obs.rejected.get(self.name) or run_overdue(ctx, self.obs.now)
        if refused is not None:
            return self.end(ProbePhase.FAILED, str(refused.reason), refused.message)
        cm = self.obs.configmaps.get(self.name)
        pods = self.obs.pods_of(None, self.step)
        node = next((n for p in pods if (n := node_of(p))), None) or self.s.node
        text = result_of(cm)
        if text is not None:
            return self.collect(text, node)
        if cm is None:
            self.d.actions.append(
                Create(probe_manifests.probe_configmap(ctx.owner, ctx.run_id, self.pp, ctx.generation))
            )
        job = self.obs.jobs.get(self.name)
        if job is None:
            for obj in rbac.job_account(ctx.owner, ctx.run_id, None, self.step, ctx.generation):
                self.d.actions.append(Create(obj))
            self.d.actions.append(
                Create(
                    probe_manifests.probe_job(
                        ctx.spec, self.pp, ctx.owner, ctx.run_id, ctx.generation, ctx.settings
                    )
                )
            )
            self.d.notes.append(
                Note("Normal", "ProbeStarted", f"roofline probe of {self.where}: started job {self.name}")
            )
            return self.update(phase=ProbePhase.RUNNING, message=None)
        finished = job_finished(job)
        if finished == "Failed":
            failure = job_failure(job, pods)
            return self.end(ProbePhase.FAILED, str(failure.reason), failure.message)
        if finished == "Complete":
            return self.end(
                ProbePhase.FAILED,
                str(Reason.RESULT_MISSING),
                f"job {self.name} completed but wrote no {job_manifests.RESULT_KEY}; "
                f"read its log: kubectl logs job/{self.name}",
            )
        for pod in pods:
            if pod_phase(pod) in ("Succeeded", "Failed"):
                continue  # an ended pod ends the Job: its failure is read from the Job, with the exit code
            broken = classify_pod_failure(pod, ctx.settings.crash_restarts)
            if broken is not None:
                return self.end(ProbePhase.FAILED, str(broken.reason), broken.message)
        waiting = next((m for p in pods if (m := unschedulable_message(p))), None)
        if waiting is not None:
            created = parse_time(created_at(job)) or self.obs.now
            timeout_s = duration_seconds(ctx.spec.server.startup_timeout)
            if startup_timed_out(created, self.obs.now, timeout_s):
                return self.end(
                    ProbePhase.FAILED,
                    str(Reason.UNSCHEDULABLE),
                    f"waited server.startupTimeout ({timeout_s:.0f} s) for a GPU. Scheduler: {waiting}",
                )
            return self.update(phase=ProbePhase.RUNNING, node=node, message=f"waiting for a GPU: {waiting}")
        return self.update(phase=ProbePhase.RUNNING, node=node, message=None)

    def collect(self, text: str, node: str | None) -> ProbeStatus:
        result, problem = parse_probe_result(text)
        if result is None:
            return self.end(
                ProbePhase.FAILED,
                str(Reason.RESULT_MISSING),
                f"job {self.name} wrote an invalid result: {problem}",
            )
        bandwidth = result.bandwidth.bytes_per_s
        failed = ", ".join(str(f.precision) for f in result.failures)
        failed = f"; not measured: {failed}" if failed else ""
        message = f"{result.gpu.name}: read bandwidth {bandwidth / 1e12:.2f} TB/s{failed}"
        self.d.notes.append(Note("Normal", "ProbeSucceeded", f"roofline probe of {self.where}: {message}"))
        return self.update(
            phase=ProbePhase.SUCCEEDED,
            node=node,
            gpu=result.gpu.name,
            memory_bandwidth_bytes_per_s=bandwidth,
            reason=None,
            message=message,
        )


class _VariantPass(_Pass):
    """Decides for one variant."""

    def __init__(
        self,
        ctx: RunContext,
        obs: Observed,
        decision: Decision,
        vp: VariantPlan,
        status: VariantStatus,
        baseline_phase: str | None = None,
    ):
        super().__init__(ctx, obs, decision)
        self.vp = vp
        self.s = status
        self.server = server_name(ctx.owner.name, ctx.run_id, vp.variant)
        self.baseline_phase = baseline_phase  # the baseline variant's phase, as this pass knows it

    def update(self, **changes: Any) -> None:
        self.s = self.s.model_copy(update=changes)

    def child_names(self) -> list[str]:
        ctx = self.ctx
        jobs = [job_name(ctx.owner.name, ctx.run_id, self.vp.variant, s.name) for s in self.vp.steps]
        return [self.server, *jobs]

    def teardown(self, include_jobs: bool) -> None:
        if self.server in self.obs.deployments:
            self.d.actions.append(Delete("Deployment", self.server))
        if self.server in self.obs.services:
            self.d.actions.append(Delete("Service", self.server))
        if include_jobs:
            for step in self.vp.steps:
                name = job_name(self.ctx.owner.name, self.ctx.run_id, self.vp.variant, step.name)
                job = self.obs.jobs.get(name)
                if job is not None and job_finished(job) is None:
                    self.d.actions.append(Delete("Job", name))

    def fail(self, failure: Failure, phase: VariantPhase = VariantPhase.FAILED) -> VariantStatus:
        self.update(phase=phase, reason=str(failure.reason), message=failure.message, step=None)
        self.d.notes.append(
            Note("Warning", str(failure.reason), f"variant {self.vp.variant}: {failure.message}")
        )
        self.teardown(include_jobs=True)
        return self.s

    def run(self, allowed: bool, probing: bool = False) -> VariantStatus:
        if self.s.phase in TERMINAL_PHASES:
            self.teardown(include_jobs=self.s.phase != VariantPhase.SUCCEEDED)
            return self.s
        if self.vp.unsupported is not None:
            return self.fail(
                Failure(Reason.UNSUPPORTED_PRECISION, self.vp.unsupported), VariantPhase.UNSUPPORTED
            )
        if self.vp.unavailable is not None:
            return self.fail(Failure(Reason.SOURCE_UNAVAILABLE, self.vp.unavailable))
        rejected = next((self.obs.rejected[n] for n in self.child_names() if n in self.obs.rejected), None)
        if rejected is not None:
            return self.fail(rejected)
        overdue = run_overdue(self.ctx, self.obs.now)
        if overdue is not None:
            return self.fail(overdue)
        if probing or not allowed:
            self.update(phase=VariantPhase.PENDING, step=STEP_PROBE if probing else None)
            return self.s
        if not self.server_ready():
            return self.s
        for step in self.vp.steps:
            if not self.job_done(step):
                return self.s
        return self.succeed()

    # ----------------------------------------------------------------------------------- server
    def server_ready(self) -> bool:
        spec, variant = self.ctx.spec, self.ctx.spec.variant(self.vp.variant)
        dep = self.obs.deployments.get(self.server)
        if dep is None or self.server not in self.obs.services:
            owner, run, gen = self.ctx.owner, self.ctx.run_id, self.ctx.generation
            if dep is None:
                settings = self.ctx.settings
                self.d.actions.append(
                    Create(
                        server_manifests.deployment(
                            spec,
                            variant,
                            owner,
                            run,
                            gen,
                            settings.server_pod_annotations,
                            cpu_image=settings.cpu_server_image,
                            hub_access=settings.hub_access,
                            pod_user=settings.pod_user,
                        )
                    )
                )
            if self.server not in self.obs.services:
                self.d.actions.append(Create(server_manifests.service(spec, variant, owner, run, gen)))
            if dep is None:
                self.d.notes.append(
                    Note(
                        "Normal",
                        "ServerCreated",
                        f"variant {self.vp.variant}: starting vLLM server {self.server}",
                    )
                )
                self.update(phase=VariantPhase.STARTING, step=STEP_SERVER)
                return False
        pods = self.obs.pods_of(self.vp.variant, STEP_SERVER)
        for pod in pods:
            failure = classify_pod_failure(pod, self.ctx.settings.crash_restarts)
            if failure is not None:
                self.fail(failure)
                return False
        refused = replica_failure(dep) if not pods else None
        if refused is not None:
            timeout_s = duration_seconds(spec.server.startup_timeout)
            created = parse_time((dep.get("metadata") or {}).get("creationTimestamp")) or self.obs.now
            if permanently_refused(refused) or startup_timed_out(created, self.obs.now, timeout_s):
                self.fail(Failure(Reason.REJECTED, f"the server pod cannot be created: {refused}"))
                return False
            self.update(phase=VariantPhase.STARTING, step=STEP_SERVER, message=f"waiting: {refused}")
            return False
        ready = [p for p in pods if pod_ready(p)]
        if ready:
            return self.record_ready(ready[0], dep)
        if self.s.startup_seconds is not None:
            # It was Ready before: a server that stops being ready mid-run keeps its slot; Jobs will tell.
            return True
        created = parse_time(created_at(dep)) or self.obs.now
        timeout_s = duration_seconds(spec.server.startup_timeout)
        placement = spec.placement_for(variant)
        for pod in pods:
            message = unschedulable_message(pod)
            if message is None:
                continue
            if self.obs.pools is None:
                self.d.needs_pools = True
                return False
            pool = self.obs.pools.get(placement.node_pool or "")
            cpu, memory = server_manifests.cpu_requests(placement) if placement.on_cpu else (None, None)
            failure = classify_unschedulable(
                message,
                pool,
                placement.node_pool,
                placement.gpus,
                placement.gpu_resource,
                cpu=quantity(cpu) if cpu else None,
                memory=quantity(memory) if memory else None,
            )
            no_node = no_node_message(pool, placement.node_pool, placement.node_pool_label)
            if failure is None and startup_timed_out(created, self.obs.now, timeout_s):
                what = no_node or f"{wanted(placement)} in pool {placement.node_pool or '(any)'}"
                failure = Failure(
                    Reason.UNSCHEDULABLE,
                    f"waited server.startupTimeout ({timeout_s:.0f} s) for {what}. Scheduler: {message}",
                )
            if failure is not None:
                self.fail(failure)
                return False
            waiting = f"{no_node}. Scheduler: {message}" if no_node else message
            if self.s.phase != VariantPhase.WAITING_FOR_GPU:
                what = "CPUs" if placement.on_cpu else "GPUs"
                self.d.notes.append(
                    Note(
                        "Normal", "WaitingForGPU", f"variant {self.vp.variant}: waiting for {what}: {waiting}"
                    )
                )
            self.update(phase=VariantPhase.WAITING_FOR_GPU, step=STEP_SERVER, message=waiting)
            return False
        if startup_timed_out(created, self.obs.now, timeout_s):
            name = name_of(pods[0]) if pods else None
            self.fail(startup_timeout_failure(timeout_s, name))
            return False
        self.update(phase=VariantPhase.STARTING, step=STEP_SERVER)
        return False

    def record_ready(self, pod: Pod, dep: Deployment) -> bool:
        if self.s.startup_seconds is not None:
            if self.s.weights_gib is None:
                self.d.weights_from[self.vp.variant] = name_of(pod, "")
            return True
        node = node_of(pod)
        created = parse_time(created_at(dep))
        ready_at = parse_time(pod_ready_time(pod)) or self.obs.now
        startup = max(0.0, (ready_at - created).total_seconds()) if created else None
        self.update(
            node=node,
            startup_seconds=startup,
            gpu=self.obs.node_products.get(node or "") or self.s.gpu,
            gpu_driver=self.obs.node_drivers.get(node or "") or self.s.gpu_driver,
            image_digest=image_digest(pod) or self.s.image_digest,
            message=None,
        )
        self.d.weights_from[self.vp.variant] = name_of(pod, "")
        took = f" in {startup:.0f} s" if startup is not None else ""
        self.d.notes.append(
            Note("Normal", "ServerReady", f"variant {self.vp.variant}: server ready on node {node}{took}")
        )
        return True

    # ------------------------------------------------------------------------------------- jobs
    def job_done(self, step: Step) -> bool:
        ctx = self.ctx
        name = job_name(ctx.owner.name, ctx.run_id, self.vp.variant, step.name)
        cm = self.obs.configmaps.get(name)
        if skipped_of(cm) is not None:
            return True
        if has_result(cm):
            if self.s.step == step.name:  # first seen: the step the status still shows as running
                self.d.notes.append(
                    Note(
                        "Normal",
                        "ResultCollected",
                        f"variant {self.vp.variant}: {step.name} result in configmap {name}",
                    )
                )
                self.update(step=None)
            return True
        job = self.obs.jobs.get(name)
        evaluating = step.kind in (StepKind.ACCURACY, StepKind.FIDELITY)
        phase = VariantPhase.EVALUATING if evaluating else VariantPhase.BENCHMARKING
        baseline_result, fidelity_result, how = None, None, ""
        screening: Screening | None = None
        parts: tuple[str, ...] = ()
        if job is None and step.kind == StepKind.ACCURACY and self.vp.variant == ctx.spec.baseline:
            count = sizes.responses_parts(ctx.spec)
            parts = tuple(
                responses_part_name(ctx.owner.name, ctx.run_id, self.vp.variant, i) for i in range(count)
            )
            screening = Screening(publish_to=parts) if parts else None
            how = (
                f" (publishes its responses for the others' screening into {count} configmap(s))"
                if parts
                else ""
            )
        if job is None and evaluating:
            use, baseline_result = self.baseline_use(step)
            baseline = ctx.spec.baseline
            if use == BaselineUse.WAIT:
                why = (
                    "fidelity reference: accuracy.fidelity compares this variant's token distributions with it"
                    if step.kind == StepKind.FIDELITY
                    else "accuracy result: accuracy.sequential stops this variant early against its outcomes"
                )
                self.update(
                    phase=phase, step=step.name, message=f"waiting for the baseline {baseline}'s {why}"
                )
                return False
            if use == BaselineUse.MISSING and step.kind == StepKind.FIDELITY:
                return self.skip(
                    step, f"the baseline {baseline} ended without a fidelity reference to compare with"
                )
            if use == BaselineUse.USE and step.kind == StepKind.FIDELITY:
                how = f" (compares with the baseline's reference in configmap {baseline_result})"
            elif use == BaselineUse.USE:
                fidelity_result = self.own_fidelity()
                screening = screening_of(ctx.spec, ctx.owner.name, ctx.run_id, self.obs.configmaps)
                sized = f"; its fidelity in configmap {fidelity_result} sizes the first chunks"
                how = f" (stops early against the baseline's outcomes in configmap {baseline_result}"
                how += sized if fidelity_result is not None else ""
                if screening is None:
                    how += "; screening off (accuracy.sequential.screen: false)"
                elif screening.mount:
                    how += f"; screens with the baseline's responses in {len(screening.mount)} configmap(s)"
                else:
                    how += f"; no screening: {screening.unscreened}, every question generated"
                how += ")"
            elif use == BaselineUse.MISSING:
                how = " (the baseline has no accuracy result: every planned question)"
        if cm is None:
            job_input = job_manifests.job_input(ctx.spec, step)
            self.d.actions.append(
                Create(
                    job_manifests.results_configmap(
                        ctx.owner, ctx.run_id, self.vp.variant, step.name, job_input, ctx.generation
                    )
                )
            )
        if job is None:
            variant = ctx.spec.variant(self.vp.variant)
            for i, part in enumerate(parts):  # empty, for the baseline's Job to write its responses into
                if part not in self.obs.configmaps:
                    self.d.actions.append(
                        Create(
                            job_manifests.responses_configmap(
                                ctx.owner, ctx.run_id, self.vp.variant, i, ctx.generation
                            )
                        )
                    )
            account = rbac.job_account(
                ctx.owner, ctx.run_id, self.vp.variant, step.name, ctx.generation, parts
            )
            for obj in account:
                self.d.actions.append(Create(obj))
            self.d.actions.append(
                Create(
                    job_manifests.job(
                        ctx.spec,
                        variant,
                        ctx.owner,
                        ctx.run_id,
                        step,
                        ctx.generation,
                        ctx.settings,
                        baseline_result,
                        fidelity_result,
                        screening,
                    )
                )
            )
            self.d.notes.append(
                Note("Normal", "JobCreated", f"variant {self.vp.variant}: started job {name}{how}")
            )
            self.update(phase=phase, step=step.name)
            return False
        finished = job_finished(job)
        pods = self.obs.pods_of(self.vp.variant, step.name)
        pod_error = self.obs.pod_create_errors.get(name)
        if finished == "Failed":
            self.fail(job_deadline_failure(job, pod_error) or job_failure(job, pods))
            return False
        if finished is None:
            for pod in pods:
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue  # an ended pod ends the Job: its failure is read from the Job
                broken = classify_pod_failure(pod, ctx.settings.crash_restarts)
                if broken is not None:
                    self.fail(broken)
                    return False
            if pod_error is not None and not pods:
                if permanently_refused(pod_error):
                    self.fail(Failure(Reason.REJECTED, f"job {name} cannot create its pod: {pod_error}"))
                    return False
                self.update(phase=phase, step=step.name, message=f"waiting: {pod_error}")
                return False
        if finished == "Complete":
            self.fail(
                Failure(
                    Reason.RESULT_MISSING,
                    f"job {name} completed but wrote no {job_manifests.RESULT_KEY} into configmap {name}; "
                    f"read its log: kubectl logs job/{name}",
                )
            )
            return False
        self.update(phase=phase, step=step.name, message=None)
        return False

    def baseline_use(self, step: Step) -> tuple[BaselineUse, str | None]:
        """Whether the fidelity or accuracy step waits for, uses, or goes without the baseline's result of
        the same step (its reference, its outcomes), and the ConfigMap that holds it."""
        ctx = self.ctx
        name = job_name(ctx.owner.name, ctx.run_id, ctx.spec.baseline, step.name)
        text = result_of(self.obs.configmaps.get(name))
        ok = text is not None and validate_result(step.kind, text, baseline=True) is None
        use = baseline_use(ctx.spec, self.vp.variant, step.kind, self.baseline_phase, ok)
        return use, name if use == BaselineUse.USE else None

    def own_fidelity(self) -> str | None:
        """The variant's fidelity results ConfigMap, when it holds a valid comparison (None: no fidelity
        step, skipped, or not valid)."""
        ctx = self.ctx
        step = next((s for s in self.vp.steps if s.kind == StepKind.FIDELITY), None)
        if step is None:
            return None
        name = job_name(ctx.owner.name, ctx.run_id, self.vp.variant, step.name)
        text = result_of(self.obs.configmaps.get(name))
        return name if text is not None and validate_result(StepKind.FIDELITY, text) is None else None

    def skip(self, step: Step, why: str) -> bool:
        """The step runs no Job: its results ConfigMap records why (so the decision survives a restart), an
        Event says so, and the variant goes on with its next step."""
        ctx = self.ctx
        if job_name(ctx.owner.name, ctx.run_id, self.vp.variant, step.name) not in self.obs.configmaps:
            cm = job_manifests.results_configmap(
                ctx.owner, ctx.run_id, self.vp.variant, step.name, {}, ctx.generation
            )
            cm["data"] = {SKIPPED_KEY: why}
            self.d.actions.append(Create(cm))
        self.d.notes.append(
            Note("Normal", "StepSkipped", f"variant {self.vp.variant}: {step.name} skipped: {why}")
        )
        return True

    def succeed(self) -> VariantStatus:
        ctx = self.ctx
        for step in self.vp.steps:
            name = job_name(ctx.owner.name, ctx.run_id, self.vp.variant, step.name)
            cm = self.obs.configmaps.get(name)
            if skipped_of(cm) is not None:
                continue
            baseline = self.vp.variant == ctx.spec.baseline
            problem = validate_result(step.kind, result_of(cm) or "", baseline)
            if problem is not None:
                return self.fail(
                    Failure(Reason.RESULT_MISSING, f"job {name} wrote an invalid result: {problem}")
                )
        self.update(phase=VariantPhase.SUCCEEDED, step=None, reason=None, message=None)
        self.d.notes.append(
            Note(
                "Normal", "VariantSucceeded", f"variant {self.vp.variant}: results collected; server deleted"
            )
        )
        self.teardown(include_jobs=False)
        return self.s


def decide(
    ctx: RunContext,
    statuses: list[VariantStatus],
    obs: Observed,
    probes: list[ProbeStatus] | None = None,
) -> Decision:
    """What to do now for the run ``ctx`` given the variants' and probes' recorded status and the observed
    children."""
    by_name = {s.name: s for s in statuses}
    current = [by_name.get(s.name) or s for s in initial_statuses(ctx.plan)]
    by_pool = {p.node_pool: p for p in probes or []}
    decision = Decision(variants=[])
    for pp, initial in zip(ctx.plan.probes, initial_probe_statuses(ctx.plan), strict=True):
        probe = by_pool.get(pp.pool) or initial
        decision.probes.append(_ProbePass(ctx, obs, decision, pp, probe).run())
    probing = waiting_for_probe(ctx.plan, {p.node_pool: p.phase for p in decision.probes})
    allowed = set(admitted(ctx.plan, {s.name: s.phase for s in current}))
    for vp, status in zip(ctx.plan.variants, current, strict=True):
        phases = {s.name: s.phase for s in current} | {s.name: s.phase for s in decision.variants}
        run = _VariantPass(ctx, obs, decision, vp, status, phases.get(ctx.spec.baseline))
        decision.variants.append(run.run(vp.variant in allowed, probing=vp.pool in probing))
    return decision


def ended(decision: Decision, before: list[VariantStatus]) -> bool:
    """Whether a variant reached a terminal phase in this pass (its lane's next variant may start)."""
    was = {s.name: s.phase for s in before}
    return any(
        v.phase in TERMINAL_PHASES and was.get(v.name) not in TERMINAL_PHASES for v in decision.variants
    )
