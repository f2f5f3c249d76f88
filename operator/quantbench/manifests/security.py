"""Pods that meet the PodSecurity `restricted` level: every pod the operator creates runs as a non-root user,
drops every capability, cannot escalate privileges and uses the runtime's default seccomp profile.

Images such as vLLM's run as root by default; the user is set here (``runAsUser``, the operator setting
``pod_user``) and given a writable home (an emptyDir) for the caches tools keep under ``$HOME``. The model
cache volume stays where the spec mounts it, and ``HF_HOME`` points there.
"""

from __future__ import annotations

from quantbench.manifests.common import Obj

HOME = "/home/quantbench"
HOME_VOLUME = "home"


def container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def restricted(pod_spec: Obj, user: int, hf_home: str | None = None) -> Obj:
    """``pod_spec`` with the restricted securityContext, a writable $HOME and ``HF_HOME`` when given."""
    pod: Obj = dict(pod_spec)
    pod["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "fsGroup": user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["volumes"] = [*pod.get("volumes", []), {"name": HOME_VOLUME, "emptyDir": {}}]
    for field in ("initContainers", "containers"):
        if field not in pod:
            continue
        out = []
        for container in pod[field]:
            c = dict(container)
            c["securityContext"] = container_security()
            env = list(c.get("env", []))
            names = {e["name"] for e in env}
            env += [{"name": "HOME", "value": HOME}] if "HOME" not in names else []
            env += [{"name": "HF_HOME", "value": hf_home}] if hf_home and "HF_HOME" not in names else []
            c["env"] = env
            c["volumeMounts"] = [*c.get("volumeMounts", []), {"name": HOME_VOLUME, "mountPath": HOME}]
            out.append(c)
        pod[field] = out
    return pod
