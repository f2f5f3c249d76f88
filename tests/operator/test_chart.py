"""The Helm chart: the CRD it ships is the generated one; its RBAC rules are the ones the tests run under."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantbench.cli import main as cli_main
from quantbench.settings import VERSION, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantbench"
NAMESPACED_RULES = CHART / "files" / "namespaced-rules.yaml"
CLUSTER_RULES = CHART / "files" / "cluster-rules.yaml"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def rules_of(path: Path) -> list[dict[str, list[str]]]:
    rules: list[dict[str, list[str]]] = yaml.safe_load(path.read_text())
    return rules


def clusterrole_rules() -> list[dict[str, list[str]]]:
    """The ClusterRole of watchAllNamespaces."""
    return rules_of(CLUSTER_RULES) + rules_of(NAMESPACED_RULES)


def test_chart_crd_is_the_generated_crd() -> None:
    assert (CHART / "crds" / "quantbench.dev_quantbenchmarks.yaml").read_text() == (
        REPO / "crds" / "quantbench.dev_quantbenchmarks.yaml"
    ).read_text(), "run: cp crds/quantbench.dev_quantbenchmarks.yaml charts/quantbench/crds/"


def test_rules_are_least_privilege() -> None:
    rules = clusterrole_rules()
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"], rule
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert not secrets, "the operator never reads Secrets: the server pod gets HF_TOKEN by reference"
    for rule in rules_of(CLUSTER_RULES):  # granted cluster-wide in every mode: read only
        assert not set(rule["verbs"]) & WRITE_VERBS, rule


def _helm() -> str | None:
    local = REPO / "tests" / "cluster" / "bin" / "helm"
    return str(local) if local.exists() else shutil.which("helm")


def _template(tmp_path: Path, *values: str) -> list[dict[str, Any]]:
    helm = _helm()
    if helm is None:
        pytest.skip("helm is built by tests/cluster/build.sh (make cluster-bin)")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp_path),
        "HELM_CONFIG_HOME": str(tmp_path),
        "HELM_DATA_HOME": str(tmp_path),
    }
    sets = [arg for v in values for arg in ("--set", v)]
    out = subprocess.run(
        [helm, "template", "qb", str(CHART), "--namespace", "quantbench-system", "--include-crds", *sets],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_with_watch_namespaces_writes_are_granted_in_exactly_those_namespaces(tmp_path: Path) -> None:
    docs = _template(tmp_path, "watchAllNamespaces=false", "watchNamespaces={team-a,team-b}")
    cluster_role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert cluster_role["rules"] == rules_of(CLUSTER_RULES)
    assert not any(set(r["verbs"]) & WRITE_VERBS for r in cluster_role["rules"])
    served = [d for d in docs if not d["metadata"]["name"].endswith("-leader-election")]
    roles = {d["metadata"]["namespace"]: d for d in served if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in served if d["kind"] == "RoleBinding"}
    leader = next(
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election")
    )
    assert leader["metadata"]["namespace"] == "quantbench-system"
    assert leader["rules"] == rules_of(CHART / "files" / "leader-election-rules.yaml")
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    assert all(r["rules"] == rules_of(NAMESPACED_RULES) for r in roles.values())
    assert bindings["team-a"]["subjects"][0]["namespace"] == "quantbench-system"
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    assert "--namespace=team-a" in args and "--all-namespaces" not in args


def test_helm_template_renders_the_rules_verbatim(tmp_path: Path) -> None:
    docs = _template(tmp_path)
    kinds = {d["kind"] for d in docs}
    assert {
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
        "Deployment",
        "CustomResourceDefinition",
    } <= kinds
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    assert role["rules"] == clusterrole_rules()
    dep = next(d for d in docs if d["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["operator", "--all-namespaces"]
    env_names = {e["name"]: e["value"] for e in container["env"]}
    assert env_names["QUANTBENCH_JOB_IMAGE"] == "quantbench/jobs:0.1.0"
    # The probe Job borrows the quantbench sources from the operator's own image.
    assert env_names["QUANTBENCH_PROBE_SOURCE_IMAGE"] == container["image"] == "quantbench/operator:0.1.0"
    settings = OperatorSettings.from_env(env_names)  # every rendered setting is valid
    assert settings.probe_image is None and settings.probe_timeout_seconds == 1800
    # The chart names the same images as the operator's own defaults (tag = the package version).
    defaults = OperatorSettings()
    assert settings.cpu_server_image == defaults.cpu_server_image == "quantbench/vllm-cpu:0.1.0"
    assert settings.job_image == defaults.job_image and settings.hub_access is True
    assert settings.gpu_hour_prices == {}


def test_chart_app_version_is_the_package_version() -> None:
    """The chart's images default to its appVersion, the operator's to the package version: one tag."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    assert OperatorSettings().cpu_server_image == f"quantbench/vllm-cpu:{VERSION}"


def test_operator_command_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["operator", "--help"])
    assert exc.value.code == 0
    assert "--all-namespaces" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli_main(["operator"])  # a scope is required
    assert exc.value.code == 2


def test_the_metrics_endpoint_can_be_bound_and_fenced(tmp_path: Path) -> None:
    peer = "metrics.networkPolicy.from[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"
    docs = _template(
        tmp_path, "metrics.bindAddress=127.0.0.1", "metrics.networkPolicy.enabled=true", f"{peer}"
    )
    env = {
        e["name"]: e["value"]
        for e in next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    }
    assert env["QUANTBENCH_METRICS_ADDRESS"] == "127.0.0.1"
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9090, "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert not any(d["kind"] == "NetworkPolicy" for d in _template(tmp_path))


def test_the_chart_environment_is_read_as_the_values_say(tmp_path: Path) -> None:
    """Every QUANTBENCH_* variable the chart renders is a setting the operator reads, with the values' meaning."""
    docs = _template(
        tmp_path,
        "settings.jobNodeSelector.quantbench\\.dev/pool=cpu",
        "settings.jobPodAnnotations.team=ml",
        "policy.allowHostPath=true",
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"].startswith("QUANTBENCH_") and "value" in e
    }
    fields = {f"QUANTBENCH_{name.upper()}" for name in OperatorSettings.model_fields}
    assert set(env) <= fields, set(env) - fields
    settings = OperatorSettings.from_env(env)
    assert settings.job_node_selector == {"quantbench.dev/pool": "cpu"}
    assert settings.job_pod_annotations == {"team": "ml"}
    assert settings.allow_host_path is True
