"""Least privilege for a run's Jobs: each Job runs as its own ServiceAccount, which may only update that
Job's own results ConfigMap (and, for a sequential baseline's accuracy Job, the ConfigMaps made for the pieces
of its responses). A Job runs the user's image (the probe runs the server image): it can publish
its own result and nothing else, never another variant's.

The ServiceAccount, Role and RoleBinding share the Job's name (and its ConfigMap's: different kinds).
"""

from __future__ import annotations

from collections.abc import Sequence

from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.naming import job_name, labels


def _meta(owner: Owner, run: str, variant: str | None, step: str, generation: int) -> Obj:
    return metadata(
        job_name(owner.name, run, variant, step), owner, labels(owner.name, run, variant, step), generation
    )


def service_account(owner: Owner, run: str, variant: str | None, step: str, generation: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(owner, run, variant, step, generation),
        "automountServiceAccountToken": True,
    }


def role(
    owner: Owner, run: str, variant: str | None, step: str, generation: int, more: Sequence[str] = ()
) -> Obj:
    """update/patch on exactly the Job's own results ConfigMap and the ConfigMaps ``more`` (resourceNames),
    nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(owner, run, variant, step, generation),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [job_name(owner.name, run, variant, step), *more],
                "verbs": ["update", "patch"],
            }
        ],
    }


def role_binding(owner: Owner, run: str, variant: str | None, step: str, generation: int) -> Obj:
    name = job_name(owner.name, run, variant, step)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(owner, run, variant, step, generation),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def job_account(
    owner: Owner, run: str, variant: str | None, step: str, generation: int, more: Sequence[str] = ()
) -> list[Obj]:
    """What a Job needs before it starts: its ServiceAccount, Role and RoleBinding (create in this order);
    ``more``: other ConfigMaps it may write (a sequential baseline's response parts)."""
    return [
        service_account(owner, run, variant, step, generation),
        role(owner, run, variant, step, generation, more),
        role_binding(owner, run, variant, step, generation),
    ]
