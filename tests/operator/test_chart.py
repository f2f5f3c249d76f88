"""The Helm chart: the CRD it ships is the generated one; its RBAC rules are the ones the tests run under."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from quantbench.cli import main as cli_main
from quantbench.settings import VERSION, OperatorSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantbench"
RULES_FILE = CHART / "files" / "clusterrole-rules.yaml"


def clusterrole_rules() -> list[dict[str, list[str]]]:
    rules: list[dict[str, list[str]]] = yaml.safe_load(RULES_FILE.read_text())
    return rules


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


def _helm() -> str | None:
    local = REPO / "tests" / "cluster" / "bin" / "helm"
    return str(local) if local.exists() else shutil.which("helm")


def test_helm_template_renders_the_rules_verbatim(tmp_path: Path) -> None:
    helm = _helm()
    if helm is None:
        pytest.skip("helm is built by tests/cluster/build.sh (make cluster-bin)")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp_path),
        "HELM_CONFIG_HOME": str(tmp_path),
        "HELM_DATA_HOME": str(tmp_path),
    }
    out = subprocess.run(
        [helm, "template", "qb", str(CHART), "--namespace", "quantbench-system", "--include-crds"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
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
