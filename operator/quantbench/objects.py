"""The shapes of the Kubernetes objects the operator reads: the API's own JSON (camelCase dicts), typed.

Only the fields the pure modules read are declared; every key is optional, as in the API's JSON (a field
left empty is left out). The driver lists objects as plain JSON (`Obj`) and hands them on as these shapes;
the accessors below read the nested parts that may be missing without `get(...) or {}` chains.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

Obj = dict[str, Any]  # any object as JSON: what the builders make and the API client sends and returns


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    creationTimestamp: str
    deletionTimestamp: str


class Condition(TypedDict, total=False):
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    lastTransitionTime: str


class ContainerStateWaiting(TypedDict, total=False):
    reason: str
    message: str


class ContainerStateTerminated(TypedDict, total=False):
    reason: str
    message: str
    exitCode: int


class ContainerState(TypedDict, total=False):
    waiting: ContainerStateWaiting
    running: dict[str, Any]
    terminated: ContainerStateTerminated


class ContainerStatus(TypedDict, total=False):
    name: str
    image: str
    imageID: str
    restartCount: int
    state: ContainerState
    lastState: ContainerState


class PodSpec(TypedDict, total=False):
    nodeName: str


class PodStatus(TypedDict, total=False):
    phase: str
    conditions: list[Condition]
    containerStatuses: list[ContainerStatus]
    initContainerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class JobStatus(TypedDict, total=False):
    conditions: list[Condition]
    active: int
    succeeded: int
    failed: int


class Job(TypedDict, total=False):
    metadata: ObjectMeta
    status: JobStatus


class DeploymentStatus(TypedDict, total=False):
    conditions: list[Condition]
    replicas: int
    readyReplicas: int


class Deployment(TypedDict, total=False):
    metadata: ObjectMeta
    status: DeploymentStatus


class ConfigMap(TypedDict, total=False):
    metadata: ObjectMeta
    data: dict[str, str]
    binaryData: dict[str, str]  # base64


class NodeSpec(TypedDict, total=False):
    unschedulable: bool


class NodeStatus(TypedDict, total=False):
    allocatable: dict[str, str]


class Node(TypedDict, total=False):
    metadata: ObjectMeta
    spec: NodeSpec
    status: NodeStatus


Object = Pod | Job | Deployment | ConfigMap | Node


def meta(obj: Object) -> ObjectMeta:
    return obj.get("metadata") or ObjectMeta()


def name_of(obj: Object, default: str = "?") -> str:
    return meta(obj).get("name", default)


def labels_of(obj: Object) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def created_at(obj: Object) -> str | None:
    return meta(obj).get("creationTimestamp")


def conditions_of(obj: Pod | Job | Deployment) -> dict[str, Condition]:
    """The object's status conditions by type."""
    status = cast(PodStatus | JobStatus | DeploymentStatus, obj.get("status") or {})
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def pod_status(pod: Pod) -> PodStatus:
    return pod.get("status") or PodStatus()


def pod_phase(pod: Pod) -> str | None:
    return pod_status(pod).get("phase")


def node_of(pod: Pod) -> str | None:
    return (pod.get("spec") or PodSpec()).get("nodeName")


def container_statuses(pod: Pod) -> list[ContainerStatus]:
    """Containers first, then init containers."""
    status = pod_status(pod)
    return list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])


def as_pods(objs: list[Obj]) -> list[Pod]:
    """Listed JSON, read as pods (the API's shape; the pure modules read only the fields declared above)."""
    return cast(list[Pod], objs)


def as_jobs(objs: list[Obj]) -> list[Job]:
    return cast(list[Job], objs)


def as_deployments(objs: list[Obj]) -> list[Deployment]:
    return cast(list[Deployment], objs)


def as_configmaps(objs: list[Obj]) -> list[ConfigMap]:
    return cast(list[ConfigMap], objs)


def as_nodes(objs: list[Obj]) -> list[Node]:
    return cast(list[Node], objs)
