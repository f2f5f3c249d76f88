"""The chart's monitoring parts: monitors only where the Prometheus Operator's kinds exist, dashboards as
ConfigMaps with the sidecar label, values checked by values.schema.json, `helm lint` clean, and the whole
rendered chart accepted by a real apiserver (server-side dry run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantbench.dashboards import DASHBOARDS
from quantbench.manifests.jobs import METRICS_PORT_NAME
from quantbench.manifests.server import PORT_NAME
from tests.cluster.kube import Cluster
from tests.metrics.chart import CHART, helm, helm_env, helm_template

HERE = Path(__file__).resolve().parent
MONITORING = ("--api-versions", "monitoring.coreos.com/v1/PodMonitor", "--api-versions",
              "monitoring.coreos.com/v1/PrometheusRule")  # fmt: skip


def _kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def test_monitors_and_rule_only_where_their_kinds_are_served(tmp_path: Path) -> None:
    plain = helm_template(tmp_path)
    assert "PodMonitor" not in _kinds(plain) and "PrometheusRule" not in _kinds(plain)
    docs = helm_template(tmp_path, *MONITORING)
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodMonitor"}
    assert set(monitors) == {"qb-quantbench-operator", "qb-quantbench-servers", "qb-quantbench-jobs"}
    assert _kinds(docs).count("PrometheusRule") == 1
    operator = monitors["qb-quantbench-operator"]["spec"]["podMetricsEndpoints"][0]
    assert operator["honorLabels"] is True and operator["port"] == "metrics"
    # The monitors name the ports the operator's pods really have.
    assert monitors["qb-quantbench-servers"]["spec"]["podMetricsEndpoints"][0]["port"] == PORT_NAME
    assert monitors["qb-quantbench-jobs"]["spec"]["podMetricsEndpoints"][0]["port"] == METRICS_PORT_NAME
    assert monitors["qb-quantbench-servers"]["spec"]["namespaceSelector"] == {"any": True}
    some = helm_template(tmp_path, *MONITORING, "--set", "watchAllNamespaces=false", "--set",
                         "watchNamespaces={bench-a,bench-b}")  # fmt: skip
    for m in (d for d in some if d["kind"] == "PodMonitor" and "operator" not in d["metadata"]["name"]):
        assert m["spec"]["namespaceSelector"] == {"matchNames": ["bench-a", "bench-b"]}
    off = helm_template(tmp_path, *MONITORING, "--set", "monitors.servers.enabled=false",
                        "--set", "prometheusRule.enabled=false")  # fmt: skip
    assert _kinds(off).count("PodMonitor") == 2 and "PrometheusRule" not in _kinds(off)


def test_dashboards_ship_as_configmaps_with_the_sidecar_label(tmp_path: Path) -> None:
    docs = helm_template(tmp_path)
    boards = [d for d in docs if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]]
    assert len(boards) == len(DASHBOARDS)
    for cm in boards:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "QuantBench"
        (key, text), *rest = cm["data"].items()
        assert not rest and key.removesuffix(".json") in DASHBOARDS
        assert json.loads(text)["uid"] == f"quantbench-{key.removesuffix('.json')}"
    moved = helm_template(tmp_path, "--set", "dashboards.namespace=monitoring", "--set",
                          "dashboards.sidecarLabel=grafana_dash")  # fmt: skip
    for cm in [d for d in moved if "dashboard" in d["metadata"]["name"]]:
        assert cm["metadata"]["namespace"] == "monitoring" and "grafana_dash" in cm["metadata"]["labels"]


def test_rules_configmap_holds_the_same_rules(tmp_path: Path) -> None:
    docs = helm_template(tmp_path, *MONITORING, "--set", "rulesConfigMap.enabled=true")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "qb-quantbench-rules")
    assert yaml.safe_load(cm["data"]["quantbench.rules.yaml"]) == rule["spec"]


def test_values_schema_rejects_bad_values(tmp_path: Path) -> None:
    cases = {
        "metrics.port=abc": "at '/metrics/port'",
        "alerts.runStuckMinutes=0": "at '/alerts/runStuckMinutes'",
        "monitors.operator.interval=soon": "at '/monitors/operator/interval'",
        "nope=1": "additional properties 'nope' not allowed",
    }
    for bad, says in cases.items():
        proc = subprocess.run(
            [helm(), "template", "qb", str(CHART), "--set", bad],
            capture_output=True, text=True, env=helm_env(tmp_path),
        )  # fmt: skip
        assert proc.returncode != 0 and says in proc.stderr, (bad, proc.stderr)


def test_helm_lint_is_clean(tmp_path: Path) -> None:
    proc = subprocess.run([helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True,
                          env=helm_env(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "0 chart(s) failed" in proc.stdout and "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout
    )


@pytest.mark.cluster
def test_rendered_chart_is_accepted_by_the_apiserver(
    cluster: Cluster, cluster_namespace: str, tmp_path: Path
) -> None:
    """The Prometheus Operator's kinds are installed from a minimal CRD, then every object the chart renders
    (CRD, RBAC, Deployment, monitors, rule, dashboards) is applied with a server-side dry run."""
    env = cluster.env()
    kubectl = str(cluster.bin_dir / "kubectl")
    subprocess.run([kubectl, "apply", "--server-side", "-f", str(HERE / "monitoring-crds.yaml")],
                   check=True, capture_output=True, env=env)  # fmt: skip
    subprocess.run([kubectl, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com"],
                   check=True, capture_output=True, env=env)  # fmt: skip
    docs = helm_template(tmp_path, "--include-crds", *MONITORING, "--set", "rulesConfigMap.enabled=true",
                         namespace=cluster_namespace)  # fmt: skip
    assert {"PodMonitor", "PrometheusRule", "ConfigMap", "Deployment", "CustomResourceDefinition"} <= set(
        _kinds(docs)
    )
    rendered = tmp_path / "chart.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    proc = subprocess.run(
        [kubectl, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(rendered)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(docs), proc.stdout
