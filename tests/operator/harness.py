"""Running the operator against the test control plane, and playing the Jobs' part.

The operator runs as a child process (`quantbench operator --namespace NS`), authenticated as a service
account bound to exactly the rules the Helm chart ships (charts/quantbench/files/*-rules.yaml): cluster-wide
(watchAllNamespaces), or read-only cluster-wide plus a Role per served namespace (watchNamespaces).
A separate process is what lets the tests kill it with SIGKILL at any step and start it again, as a crash
or a node loss would.

The Jobs' part: a test writes the result JSON into the Job's results ConfigMap with
`quantbench_loadgen.publish` *as the run's Job service account* (so the least-privilege Role is exercised),
then lets kwok end the Job's pod (tests.cluster.kube.Cluster.finish_job).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml

from quantbench.kube import ApiError, Kube
from quantbench.naming import LABEL_BENCHMARK, LABEL_RUN, job_name, selector
from quantbench_loadgen.publish import Parts, Target, publish, publish_parts
from tests.cluster.kube import Cluster, wait_for
from tests.operator import factories

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "quantbench.dev_quantbenchmarks.yaml"
NAMESPACED_RULES_FILE = REPO / "charts" / "quantbench" / "files" / "namespaced-rules.yaml"
CLUSTER_RULES_FILE = REPO / "charts" / "quantbench" / "files" / "cluster-rules.yaml"
LEADER_RULES_FILE = REPO / "charts" / "quantbench" / "files" / "leader-election-rules.yaml"
OPERATOR_NS = "quantbench-system"
OPERATOR_SA = "quantbench-operator"
KIND = "QuantBenchmark"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
T = TypeVar("T")


def install_crd(kube: Kube) -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    name = crd["metadata"]["name"]
    try:
        kube.request("POST", path, body=crd)
    except ApiError as exc:
        if exc.status != 409:
            raise
        current = kube.request("GET", f"{path}/{name}")
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        kube.request("PUT", f"{path}/{name}", body=crd)

    def established() -> bool:
        got = kube.request("GET", f"{path}/{name}")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (got.get("status") or {}).get("conditions") or []
        )

    wait_for(established, 30, "CRD Established")


def chart_rules(path: Path) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(path.read_text())
    return rules


def install_operator_rbac(
    kube: Kube, account: str = OPERATOR_SA, namespaces: list[str] | None = None
) -> None:
    """The chart's RBAC, rules verbatim, bound to the operator's ``account``: a ClusterRole with every rule
    (watchAllNamespaces), or with ``namespaces`` a read-only ClusterRole plus a Role and RoleBinding in each
    of them (watchNamespaces)."""
    cluster_rules = chart_rules(CLUSTER_RULES_FILE)
    namespaced = chart_rules(NAMESPACED_RULES_FILE)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    api_version = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": OPERATOR_NS}]

    def ref(kind: str) -> dict[str, str]:
        return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": account}

    objects: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}}),
        (
            f"/api/v1/namespaces/{OPERATOR_NS}/serviceaccounts",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": OPERATOR_NS},
            },
        ),
        (
            f"{rbac}/clusterroles",
            {
                "apiVersion": api_version,
                "kind": "ClusterRole",
                "metadata": {"name": account},
                "rules": cluster_rules + (namespaced if namespaces is None else []),
            },
        ),
        (
            f"{rbac}/clusterrolebindings",
            {
                "apiVersion": api_version,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": account},
                "roleRef": ref("ClusterRole"),
                "subjects": subject,
            },
        ),
    ]
    for ns, rules in [(OPERATOR_NS, chart_rules(LEADER_RULES_FILE))] + [
        (n, namespaced) for n in namespaces or []
    ]:
        meta = {"name": account, "namespace": ns}
        objects += [
            (
                f"{rbac}/namespaces/{ns}/roles",
                {"apiVersion": api_version, "kind": "Role", "metadata": meta, "rules": rules},
            ),
            (
                f"{rbac}/namespaces/{ns}/rolebindings",
                {
                    "apiVersion": api_version,
                    "kind": "RoleBinding",
                    "metadata": meta,
                    "roleRef": ref("Role"),
                    "subjects": subject,
                },
            ),
        ]
    for path, obj in objects:
        try:
            kube.request("POST", path, body=obj)
        except ApiError as exc:
            if exc.status != 409:
                raise
            if obj["kind"] in ("ClusterRole", "Role"):
                kube.request("PUT", f"{path}/{account}", body=obj)


class OperatorProcess:
    """`quantbench operator` as a child process with the operator service account's kubeconfig."""

    def __init__(
        self,
        cluster: Cluster,
        namespaces: list[str] | None,
        log_dir: Path,
        env: dict[str, str] | None = None,
        account: str = OPERATOR_SA,
    ) -> None:
        self.cluster = cluster
        self.namespaces = namespaces
        self.log_dir = log_dir
        self.extra_env = {
            "QUANTBENCH_RESYNC_SECONDS": "2",
            "QUANTBENCH_LEASE_NAMESPACE": OPERATOR_NS,
            "QUANTBENCH_LEASE_DURATION_SECONDS": "4",  # a killed operator's successor waits ~4 s
            **(env or {}),
        }
        self.kubeconfig = cluster.service_account_kubeconfig(OPERATOR_NS, account, create=False)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> OperatorProcess:
        self.starts += 1
        scope = (
            ["--all-namespaces"] if self.namespaces is None else [f"--namespace={n}" for n in self.namespaces]
        )
        env = {**os.environ, **self.extra_env}
        env.pop("KUBECONFIG", None)
        log = (self.log_dir / f"operator-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "quantbench.cli",
                "operator",
                *scope,
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log")))

    def assert_alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"operator exited:\n{self.logs()[-4000:]}"


class Bench:
    """One QuantBenchmark under test: create it, read it, and do what its Jobs would do."""

    def __init__(self, cluster: Cluster, kube: Kube, namespace: str, name: str, ca_file: Path) -> None:
        self.cluster = cluster
        self.kube = kube
        self.ns = namespace
        self.name = name
        self.ca_file = ca_file

    def create(self, spec: dict[str, Any]) -> Bench:
        body = {
            "apiVersion": "quantbench.dev/v1alpha1",
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.ns},
            "spec": spec,
        }
        self.kube.create(body)
        return self

    def get(self) -> dict[str, Any] | None:
        return self.kube.get(KIND, self.ns, self.name)

    def status(self) -> dict[str, Any]:
        body = self.get() or {}
        result: dict[str, Any] = body.get("status") or {}
        return result

    def run_id(self, timeout: float = 30) -> str:
        def current() -> str | None:
            run = self.status().get("currentRun") or {}
            rid: str | None = run.get("id")
            return rid

        return wait_for(current, timeout, f"a run of {self.name}")

    def variant(self, name: str) -> dict[str, Any]:
        for v in self.status().get("variants") or []:
            if v["name"] == name:
                result: dict[str, Any] = v
                return result
        return {}

    def wait_variant(self, name: str, phases: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            v = self.variant(name)
            return v if v.get("phase") in phases else None

        return wait_for(
            reached,
            timeout,
            f"variant {name} in {phases} (now {self.variant(name).get('phase')})",
        )

    def wait_phase(self, phases: tuple[str, ...], timeout: float = 90) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            status = self.status()
            return status if not status.get("currentRun") and status.get("phase") in phases else None

        return wait_for(
            finished,
            timeout,
            f"{self.name} run finished in {phases} (now {self.status().get('phase')})",
        )

    def children(self, kind: str, run: str | None = None) -> list[dict[str, Any]]:
        labels = {LABEL_BENCHMARK: self.name} | ({LABEL_RUN: run} if run else {})
        return self.kube.list(kind, self.ns, selector(labels))

    def names(self, kind: str, run: str | None = None) -> set[str]:
        return {o["metadata"]["name"] for o in self.children(kind, run)}

    def wait_released(
        self, kinds: tuple[str, ...] = ("Deployment", "Service", "Job"), timeout: float = 30
    ) -> None:
        """Wait until the benchmark holds none of ``kinds``: a finished run is recorded in its status first
        and torn down right after, so its children may outlive the status write by a moment."""
        for kind in kinds:
            wait_for(lambda kind=kind: not self.names(kind), timeout, f"every {kind} of {self.name} deleted")

    def events(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.kube.list("Event", self.ns)
            if e.get("involvedObject", {}).get("name") == self.name
            and e["involvedObject"].get("kind") == KIND
        ]

    def event_reasons(self) -> set[str]:
        return {e["reason"] for e in self.events()}

    def wait_event(self, reason: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: next((e for e in self.events() if e["reason"] == reason), None),
            timeout,
            f"event {reason}",
        )

    def wait_events(self, reasons: set[str], timeout: float = 30) -> set[str]:
        """Wait until an Event of each reason was posted (the operator posts them in the background, so
        one may land after the status write that follows the decision it records)."""

        def posted() -> set[str] | None:
            seen = self.event_reasons()
            return seen if seen >= reasons else None

        return wait_for(posted, timeout, f"events {sorted(reasons)}")

    def wait_announced(self, run: str, timeout: float = 30) -> None:
        """Wait until every server and Job of ``run`` has its creation Event: the operator creates the
        object first and posts the Event in the background, so a crash right after the object appears
        could lose it."""

        def announced() -> bool:
            messages = [e["message"] for e in self.events() if e["reason"] in ("ServerCreated", "JobCreated")]
            made = self.names("Deployment", run) | self.names("Job", run)
            return all(any(name in m for m in messages) for name in made)

        wait_for(announced, timeout, f"a creation event for every server and Job of {run}")

    # ------------------------------------------------------------------------------- Jobs' part
    def wait_job(self, run: str, variant: str | None, step: str, timeout: float = 60) -> str:
        name = job_name(self.name, run, variant, step)
        wait_for(lambda: self.kube.get("Job", self.ns, name), timeout, f"job {name}")
        return name

    def publish_result(
        self, run: str, variant: str | None, step: str, content: str, compress: bool = False
    ) -> None:
        """Write the result as the Job would: with the Job's own service account token (``compress``:
        gzip-compressed into binaryData, as the baseline's fidelity Job publishes its reference)."""
        account = job_name(self.name, run, variant, step)
        token = self.cluster.service_account_token(self.ns, account, create=False)
        target = Target(server=self.cluster.server, namespace=self.ns, token=token, ca_file=str(self.ca_file))
        publish(target, job_name(self.name, run, variant, step), "result.json", content, compress=compress)

    def publish_responses(self, job: str, content: bytes | None) -> Parts:
        """Publish a sequential baseline's responses as its accuracy Job does (``quantbench_loadgen.publish
        --part``, into the ConfigMaps its command names), with the Job's own service account token."""
        script = self.kube.get("Job", self.ns, job)["spec"]["template"]["spec"]["containers"][0]["command"][
            -1
        ]
        argv = next(shlex.split(c.removesuffix(" || true")) for c in script.split("; ") if "--part" in c)
        names = [argv[i + 1] for i, a in enumerate(argv) if a == "--part"]
        token = self.cluster.service_account_token(self.ns, job, create=False)
        target = Target(server=self.cluster.server, namespace=self.ns, token=token, ca_file=str(self.ca_file))
        return publish_parts(target, job, names, argv[argv.index("--key") + 1], content)

    def play_job(
        self, run: str, variant: str, step: str, spec: dict[str, Any], outcome: str = "succeeded"
    ) -> str:
        """Wait for the step's Job, publish its result (when it succeeds) and end its pod."""
        name = self.wait_job(run, variant, step)
        if outcome == "succeeded":
            reference = step == "fidelity" and variant == spec["baseline"]
            self.publish_result(run, variant, step, result_for(spec, variant, step), compress=reference)
            self.cluster.finish_job(self.ns, name, "succeeded")
        else:
            self.cluster.finish_job(self.ns, name, "failed", exit_code=1, reason="Error")
        return name

    def play_variant(self, run: str, variant: str, spec: dict[str, Any]) -> None:
        for step in steps_of(spec):
            if not self.step_done(run, variant, step):
                self.play_job(run, variant, step, spec)

    def step_done(self, run: str, variant: str, step: str) -> bool:
        """The step's result is in its ConfigMap and its Job's pods have ended."""
        name = job_name(self.name, run, variant, step)
        cm = self.kube.get("ConfigMap", self.ns, name)
        cm = cm or {}
        if "result.json" not in (cm.get("data") or {}) and "result.json.gz" not in (
            cm.get("binaryData") or {}
        ):
            return False
        pods = self.kube.list("Pod", self.ns, f"batch.kubernetes.io/job-name={name}")
        return all((p.get("status") or {}).get("phase") in ("Succeeded", "Failed") for p in pods)

    def uids(self, run: str) -> dict[str, str]:
        """kind/name -> uid of the run's children."""
        out = {}
        for kind in ("Deployment", "Service", "Job", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"):
            for o in self.children(kind, run):
                out[f"{kind}/{o['metadata']['name']}"] = o["metadata"]["uid"]
        return out

    def server_pods(self, run: str, variant: str) -> list[dict[str, Any]]:
        sel = selector(
            {
                LABEL_BENCHMARK: self.name,
                LABEL_RUN: run,
                "quantbench.dev/variant": variant,
                "quantbench.dev/step": "server",
            }
        )
        return self.kube.list("Pod", self.ns, sel)

    def wait_server_pod(self, run: str, variant: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: next(iter(self.server_pods(run, variant)), None), timeout, f"server pod of {variant}"
        )


def steps_of(spec: dict[str, Any]) -> list[str]:
    steps = [f"wl-{w['name']}" for w in spec.get("workloads") or []]
    accuracy = spec.get("accuracy")
    fidelity = ["fidelity"] if isinstance(accuracy, dict) and "fidelity" in accuracy else []
    return steps + fidelity + (["accuracy"] if accuracy else [])


def result_for(spec: dict[str, Any], variant: str, step: str) -> str:
    if step == "fidelity":  # the baseline's reference, or a variant's comparison with it
        return (
            factories.fidelity_reference()
            if variant == spec["baseline"]
            else factories.fidelity_result(variant)
        )
    if step == "accuracy":
        return factories.accuracy_result(variant, int((spec.get("accuracy") or {}).get("limit") or 20))
    workload = next(w for w in spec["workloads"] if f"wl-{w['name']}" == step)
    return factories.loadgen_result(variant, workload)


def retry(fn: Callable[[], T], attempts: int = 3, delay: float = 0.5) -> T:
    for i in range(attempts):
        try:
            return fn()
        except Exception:
            if i == attempts - 1:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------ refusals the apiserver makes


@contextmanager
def admission_policy(kube: Kube, api_group: str, plural: str, expression: str, message: str) -> Iterator[str]:
    """A ValidatingAdmissionPolicy (and its binding) that denies CREATE/UPDATE of ``plural`` (a resource or
    subresource of ``api_group``) in namespaces labelled with its name, when ``expression`` is false;
    removed on exit."""
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [api_group],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [plural],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"quantbench.dev/test-policy": name}},
            },
            "validations": [{"expression": expression, "message": message}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"quantbench.dev/test-policy": name}}},
        },
    }
    kube.request("POST", f"{ADMISSION}/validatingadmissionpolicies", body=policy)
    kube.request("POST", f"{ADMISSION}/validatingadmissionpolicybindings", body=binding)
    try:
        yield name
    finally:
        for plural_ in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            try:
                kube.request("DELETE", f"{ADMISSION}/{plural_}/{name}")
            except ApiError as exc:
                if exc.status != 404:
                    raise


def label_namespace(kube: Kube, namespace: str, labels: dict[str, str | None]) -> None:
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        body={"metadata": {"labels": labels}},
        content_type="application/merge-patch+json",
    )


def policy_active(bench: Bench, probe: dict[str, Any]) -> None:
    """Wait until the apiserver enforces a just-made policy (its admission cache lags by a moment):
    a dry-run create of ``probe`` is refused."""

    def refused() -> bool:
        try:
            bench.kube.request(
                "POST", bench.kube.path(probe["kind"], bench.ns), body=probe, query={"dryRun": "All"}
            )
        except ApiError as exc:
            return exc.status in (403, 422)
        return False

    wait_for(refused, 30, "admission policy enforced")
