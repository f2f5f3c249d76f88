"""The run ConfigMap: the spec snapshot and plan a run executes, so that a restarted operator (or a spec
changed mid-run) never changes what a run in progress does."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.manifests.common import Obj, Owner, metadata
from quantbench.naming import STEP_RUN, labels, run_config_name
from quantbench.plan import RunPlan
from quantbench_loadgen.schema import ApiModel

RUN_KEY = "run.json"


class RunSnapshot(ApiModel):
    """What one run executes: fixed when it starts."""

    run_id: str = Field(description="Run id.")
    generation: int = Field(description="Spec generation the run executes.")
    started_at: datetime = Field(description="Run start (UTC).")
    spec: QuantBenchmarkSpec = Field(description="The spec as it was when the run started.")
    plan: RunPlan = Field(description="Lanes and steps.")


def run_configmap(owner: Owner, snapshot: RunSnapshot) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            run_config_name(owner.name, snapshot.run_id),
            owner,
            labels(owner.name, snapshot.run_id, None, STEP_RUN),
            snapshot.generation,
        ),
        "data": {RUN_KEY: snapshot.model_dump_json(by_alias=True, exclude_none=True)},
    }


def snapshot_from_configmap(cm: Obj) -> RunSnapshot:
    return RunSnapshot.model_validate_json((cm.get("data") or {})[RUN_KEY])
