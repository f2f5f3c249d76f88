"""Least privilege for a run's Jobs: a ServiceAccount that may only update that run's results ConfigMaps."""

from __future__ import annotations

from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.naming import STEP_JOBS_ACCOUNT, jobs_account_name, labels


def _meta(owner: Owner, run: str, generation: int) -> Obj:
    return metadata(
        jobs_account_name(owner.name, run),
        owner,
        labels(owner.name, run, None, STEP_JOBS_ACCOUNT),
        generation,
    )


def service_account(owner: Owner, run: str, generation: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(owner, run, generation),
        "automountServiceAccountToken": True,
    }


def role(owner: Owner, run: str, generation: int, configmaps: list[str]) -> Obj:
    """update/patch on exactly the run's results ConfigMaps (resourceNames), nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(owner, run, generation),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": sorted(configmaps),
                "verbs": ["update", "patch"],
            }
        ],
    }


def role_binding(owner: Owner, run: str, generation: int) -> Obj:
    name = jobs_account_name(owner.name, run)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(owner, run, generation),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }
