"""Metadata shared by every child object: name, namespace, labels, owner reference."""

from __future__ import annotations

from dataclasses import dataclass

from quantbench.api.v1alpha1 import API_VERSION, KIND
from quantbench.naming import ANNOTATION_GENERATION
from quantbench.objects import Obj


@dataclass(frozen=True)
class Owner:
    """The QuantBenchmark that owns a run's children."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> Obj:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def metadata(
    name: str,
    owner: Owner,
    labels: dict[str, str],
    generation: int | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    meta: Obj = {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(labels),
        "ownerReferences": [owner.reference()],
    }
    notes = dict(annotations or {})
    if generation is not None:
        notes[ANNOTATION_GENERATION] = str(generation)
    if notes:
        meta["annotations"] = notes
    return meta
