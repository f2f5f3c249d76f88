"""Client-side helpers for tests against the test control plane: API clients (admin or a service
account), namespaces, waiting, and deciding the fate of pods that kwok runs.

Pods on the simulated nodes go Running/Ready by themselves and then keep running until a test sets
``kwok.quantbench.dev/outcome`` (see kwok-stages.yaml); :meth:`Cluster.succeed_pod`,
:meth:`Cluster.fail_pod` and :meth:`Cluster.finish_job` do that. Putting the annotations in a pod
template up front works too (:data:`SUCCEED` / :func:`fail_annotations`).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.cluster.controlplane import kubeconfig_dict
from tests.cluster.pools import PoolSet, load_pools

OUTCOME_ANNOTATION = "kwok.quantbench.dev/outcome"
EXIT_CODE_ANNOTATION = "kwok.quantbench.dev/exit-code"
REASON_ANNOTATION = "kwok.quantbench.dev/reason"
READY_ANNOTATION = "kwok.quantbench.dev/ready"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

SUCCEED: dict[str, str] = {OUTCOME_ANNOTATION: "succeeded"}
NEVER_READY: dict[str, str] = {READY_ANNOTATION: "false"}

Outcome = Literal["succeeded", "failed"]
T = TypeVar("T")


def fail_annotations(exit_code: int = 1, reason: str = "Error") -> dict[str, str]:
    """Annotations that make kwok terminate a running pod as Failed with this exit code and reason."""
    return {OUTCOME_ANNOTATION: "failed", EXIT_CODE_ANNOTATION: str(exit_code), REASON_ANNOTATION: reason}


def wait_for(
    check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition", interval: float = 0.2
) -> T:
    """Poll ``check`` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


def is_finished(pod: k8s.V1Pod) -> bool:
    return pod.status is not None and pod.status.phase in ("Succeeded", "Failed")


@dataclass
class Cluster:
    """A running test control plane, as tests see it."""

    kubeconfig: Path
    server: str
    ca_pem: bytes
    bin_dir: Path
    workdir: Path
    startup_seconds: float = 0.0
    pools: PoolSet = field(default_factory=load_pools)

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: Path, bin_dir: Path, workdir: Path, startup_seconds: float = 0.0
    ) -> Cluster:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        return cls(
            kubeconfig=kubeconfig,
            server=cluster["server"],
            ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
            bin_dir=bin_dir,
            workdir=workdir,
            startup_seconds=startup_seconds,
        )

    # ---------------------------------------------------------------------------------- clients
    def api_client(self) -> k8s.ApiClient:
        """A new cluster-admin ApiClient (close it, or use it as a context manager)."""
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, helm, the operator): KUBECONFIG and PATH with our binaries."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def service_account_token(
        self, namespace: str, name: str, create: bool = True, expiration_seconds: int = 3600
    ) -> str:
        """A bound token for ``namespace/name`` from the TokenRequest API (creating the account if asked)."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            if create:
                try:
                    core.create_namespaced_service_account(
                        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
                    )
                except ApiException as e:
                    if e.status != 409:
                        raise
            request = k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            result = core.create_namespaced_service_account_token(name, namespace, request)
            if result.status is None or not result.status.token:
                raise RuntimeError(f"the apiserver returned no token for service account {namespace}/{name}")
            return result.status.token

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path | None = None, create: bool = True
    ) -> Path:
        """Write a kubeconfig that authenticates as the service account ``namespace/name``."""
        token = self.service_account_token(namespace, name, create=create)
        if path is None:
            path = self.workdir / "kubeconfigs" / f"{namespace}.{name}.{uuid.uuid4().hex[:6]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            yaml.safe_dump(kubeconfig_dict(self.server, self.ca_pem, {"token": token}, namespace))
        )
        path.chmod(0o600)
        return path

    def service_account_client(self, namespace: str, name: str, create: bool = True) -> k8s.ApiClient:
        """An ApiClient that acts as the service account ``namespace/name``."""
        return k8s_config.new_client_from_config(
            config_file=str(self.service_account_kubeconfig(namespace, name, create=create))
        )

    # ------------------------------------------------------------------------------- namespaces
    def create_namespace(self, name: str, timeout: float = 30.0) -> str:
        """Create a namespace and wait until its `default` service account exists (pods need it)."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))

            def has_default_sa() -> bool:
                try:
                    core.read_namespaced_service_account("default", name)
                except ApiException as e:
                    if e.status == 404:
                        return False
                    raise
                return True

            wait_for(has_default_sa, timeout, f"service account {name}/default")
        return name

    def delete_namespace(self, name: str) -> None:
        with self.api_client() as api:
            try:
                k8s.CoreV1Api(api).delete_namespace(name)
            except ApiException as e:
                if e.status != 404:
                    raise

    # ------------------------------------------------------------------------------- pod fates
    def set_pod_outcome(
        self, namespace: str, pod: str, outcome: Outcome, exit_code: int = 1, reason: str = "Error"
    ) -> None:
        annotations = SUCCEED if outcome == "succeeded" else fail_annotations(exit_code, reason)
        with self.api_client() as api:
            k8s.CoreV1Api(api).patch_namespaced_pod(
                pod, namespace, {"metadata": {"annotations": annotations}}
            )

    def succeed_pod(self, namespace: str, pod: str) -> None:
        """Let a kwok-run pod exit 0 (phase Succeeded)."""
        self.set_pod_outcome(namespace, pod, "succeeded")

    def fail_pod(self, namespace: str, pod: str, exit_code: int = 1, reason: str = "Error") -> None:
        """Let a kwok-run pod exit non-zero (phase Failed); reason e.g. "OOMKilled" with exit code 137."""
        self.set_pod_outcome(namespace, pod, "failed", exit_code, reason)

    def wait_pod_phase(
        self, namespace: str, pod: str, phases: tuple[str, ...], timeout: float = 30.0
    ) -> k8s.V1Pod:
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)

            def current() -> k8s.V1Pod | None:
                p = core.read_namespaced_pod(pod, namespace)
                return p if p.status and p.status.phase in phases else None

            return wait_for(current, timeout, f"pod {namespace}/{pod} in phase {'/'.join(phases)}")

    def finish_job(
        self,
        namespace: str,
        job: str,
        outcome: Outcome = "succeeded",
        exit_code: int = 1,
        reason: str = "Error",
        timeout: float = 30.0,
    ) -> list[str]:
        """Wait for the Job's pods to run, make every unfinished one succeed or fail, and wait until
        kwok has ended each (or the pod is gone): the outcome is an annotation kwok acts on later.

        Returns the names of the pods it decided.
        """
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)

            def running_pods() -> list[k8s.V1Pod]:
                pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={job}").items
                unfinished = [p for p in pods if not is_finished(p)]
                if unfinished and all(p.status and p.status.phase == "Running" for p in unfinished):
                    return unfinished
                return []

            pods = wait_for(running_pods, timeout, f"running pods of job {namespace}/{job}")
            names = [str(p.metadata and p.metadata.name) for p in pods]
            for name in names:
                self.set_pod_outcome(namespace, name, outcome, exit_code, reason)

            def ended() -> bool:
                for name in names:
                    try:
                        pod = core.read_namespaced_pod(name, namespace)
                    except ApiException as exc:
                        if exc.status == 404:
                            continue
                        raise
                    if not is_finished(pod):
                        return False
                return True

            wait_for(ended, timeout, f"pods {names} of job {namespace}/{job} ended")
        return names

    def wait_job_condition(
        self, namespace: str, job: str, condition: str, timeout: float = 30.0
    ) -> k8s.V1Job:
        """Wait until the Job has ``condition`` (Complete, Failed, ...) with status True."""
        with self.api_client() as api:
            batch = k8s.BatchV1Api(api)

            def current() -> k8s.V1Job | None:
                j = batch.read_namespaced_job_status(job, namespace)
                conds = (j.status and j.status.conditions) or []
                return j if any(c.type == condition and c.status == "True" for c in conds) else None

            return wait_for(current, timeout, f"job {namespace}/{job} condition {condition}")
