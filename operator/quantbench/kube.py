"""The operator's edge to the Kubernetes API: plain JSON dicts in and out, idempotent create and delete.

Every call goes through one `kubernetes.client.ApiClient` (credentials from the in-cluster service account or
a kubeconfig); objects are the API's own JSON (camelCase dicts), which the pure modules (plan, manifests,
failures, reconcile) read and build.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from quantbench.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION
from quantbench.naming import MANAGED_BY
from quantbench.objects import Obj

log = logging.getLogger(__name__)

# kind -> (API prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Pod": ("/api/v1", "pods", True),
    "Service": ("/api/v1", "services", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "Event": ("/api/v1", "events", True),
    "Node": ("/api/v1", "nodes", False),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "Job": ("/apis/batch/v1", "jobs", True),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    KIND: (f"/apis/{GROUP}/{VERSION}", PLURAL, True),
}
# What a run creates, deleted in this order on cleanup.
CHILD_KINDS = ("Deployment", "Service", "Job", "ConfigMap", "RoleBinding", "Role", "ServiceAccount")


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status} {body[:400]}")


def load_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient from the in-cluster service account, else from a kubeconfig ($KUBECONFIG or the default)."""
    configuration = k8s.Configuration()
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
    else:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return k8s.ApiClient(configuration)


class Kube:
    """Thread-safe JSON access to the API server."""

    requests = 0  # API requests made by this client (a figure for benchmarks)
    request_seconds = 0.0  # time spent waiting for their answers, summed over threads (likewise)
    _count_lock = threading.Lock()

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ raw
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> Any:
        with Kube._count_lock:
            self.requests += 1
        url_path = f"{path}?{urlencode(query)}" if query else path
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        m, url, hdrs, payload, _ = self.api.param_serialize(
            method=method,
            resource_path=url_path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        started = time.monotonic()
        try:
            response = self.api.call_api(m, url, hdrs, payload, _request_timeout=30)
            data = response.read()
        finally:
            with Kube._count_lock:
                self.request_seconds += time.monotonic() - started
        if not 200 <= response.status < 300:
            raise ApiError(response.status, method, url_path, data.decode(errors="replace") if data else "")
        if not data:
            return None
        if "json" not in (response.getheader("Content-Type") or "application/json"):
            return data.decode(errors="replace")
        return json.loads(data)

    @staticmethod
    def path(kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural, namespaced = RESOURCES[kind]
        out = prefix
        if namespaced and namespace is not None:
            out += f"/namespaces/{quote(namespace)}"
        out += f"/{plural}"
        if name is not None:
            out += f"/{quote(name)}"
        if sub is not None:
            out += f"/{sub}"
        return out

    # ------------------------------------------------------------------------------------ objects
    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            result: Obj = self.request("GET", self.path(kind, namespace, name))
            return result
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        query = {"labelSelector": selector} if selector else {}
        if field_selector:
            query["fieldSelector"] = field_selector
        result = self.request("GET", self.path(kind, namespace), query=query or None)
        items: list[Obj] = result.get("items") or []
        return items

    def create(self, obj: Obj) -> bool:
        """Create ``obj``; False (no error) when it already exists: creation is idempotent."""
        kind = obj["kind"]
        try:
            self.request("POST", self.path(kind, obj["metadata"].get("namespace")), body=obj)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self.request("DELETE", self.path(kind, namespace, name), body=body)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: Obj, sub: str | None = None
    ) -> Obj:
        result: Obj = self.request(
            "PATCH",
            self.path(kind, namespace, name, sub),
            body=patch,
            content_type="application/merge-patch+json",
        )
        return result

    def pod_log(self, namespace: str, name: str, tail_lines: int = 2000) -> str | None:
        """The pod's log, or None when it cannot be read (no kubelet, container gone)."""
        try:
            text = self.request(
                "GET", self.path("Pod", namespace, name, "log"), query={"tailLines": str(tail_lines)}
            )
        except Exception as exc:  # an API error, or no kubelet to answer (a fake node): "no log"
            log.debug("no log for pod %s/%s: %s", namespace, name, exc)
            return None
        return text if isinstance(text, str) else json.dumps(text)

    def event(self, owner: Obj, type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on the QuantBenchmark (failures to post are logged, never raised)."""
        meta = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1000],
            "type": type_,
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "reportingInstance": MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", self.path("Event", meta["namespace"]), body=event)
        except Exception as exc:
            log.warning(
                "could not record event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc
            )
