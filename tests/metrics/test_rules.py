"""The chart's alert rules: `promtool check rules`, and `promtool test rules` with one case per alert that
fires on a planted condition and stays silent on a clean run (Debian's prometheus package has promtool).

The rules are rendered by `helm template` from the chart, exactly as the PrometheusRule ships them. The unit
tests compare alert labels; annotations are checked by `promtool check rules` (template syntax) and left out
of the unit tests' copy, since promtool would otherwise compare their rendered text too.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.metrics.chart import helm_template

ALERTS = (
    "QuantBenchRegressionDetected",
    "QuantBenchRunFailed",
    "QuantBenchRunStuck",
    "QuantBenchScheduledRunMissed",
    "QuantBenchOperatorDown",
    "QuantBenchOperatorErroring",
)
BENCH = 'namespace="bench",benchmark="llama",model="m"'
OPERATOR = 'namespace="quantbench-system",pod="qb-operator-0"'


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: apt-get install prometheus (.ci/run installs it)")
    return binary


def rendered_rules(tmp_path: Path, *values: str) -> dict[str, Any]:
    """The PrometheusRule's spec (a rule file: {groups: [...]}) as the chart renders it."""
    docs = helm_template(
        tmp_path,
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
        "--show-only",
        "templates/prometheusrule.yaml",
        *values,
    )
    assert [d["kind"] for d in docs] == ["PrometheusRule"]
    spec: dict[str, Any] = docs[0]["spec"]
    return spec


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return rendered_rules(tmp_path_factory.mktemp("helm"))


@dataclass
class Case:
    """Series (promtool's expanding notation, 1m steps) and when `alert` must fire, with which labels."""

    alert: str
    series: dict[str, str]
    at: str
    labels: dict[str, str] = field(default_factory=dict)
    clean: dict[str, str] = field(default_factory=dict)  # the same signals on a healthy run: no alert


CASES = [
    Case(
        "QuantBenchRegressionDetected",
        {f'quantbench_regressions{{{BENCH},variant="awq-int4",precision="awq-int4"}}': "0x10 2x10"},
        "15m",
        {"namespace": "bench", "benchmark": "llama", "variant": "awq-int4", "severity": "warning"},
        {f'quantbench_regressions{{{BENCH},variant="awq-int4",precision="awq-int4"}}': "0x20"},
    ),
    Case(
        "QuantBenchRunFailed",
        {
            f'quantbench_run_phase{{{BENCH},phase="Failed"}}': "0x5 1x10",
            f'quantbench_run_phase{{{BENCH},phase="Running"}}': "1x5 0x10",
        },
        "10m",
        {"namespace": "bench", "benchmark": "llama", "severity": "warning"},
        {
            f'quantbench_run_phase{{{BENCH},phase="Failed"}}': "0x15",
            f'quantbench_run_phase{{{BENCH},phase="Succeeded"}}': "0x5 1x10",
        },
    ),
    Case(
        # In progress for 2 h; the variant has been Benchmarking at half progress since minute 10.
        "QuantBenchRunStuck",
        {
            f"quantbench_run_in_progress{{{BENCH}}}": "1x130",
            f"quantbench_run_start_timestamp_seconds{{{BENCH}}}": "0x130",
            f'quantbench_variant_phase{{{BENCH},variant="bf16",precision="bf16",phase="Starting"}}': "1x10 0x120",
            f'quantbench_variant_phase{{{BENCH},variant="bf16",precision="bf16",phase="Benchmarking"}}': (
                "0x10 1x120"
            ),
            f'quantbench_variant_progress_ratio{{{BENCH},variant="bf16",precision="bf16"}}': "0x10 0.5x120",
        },
        "2h",
        {"namespace": "bench", "benchmark": "llama", "severity": "warning"},
        {
            # A long run that keeps finishing steps: never stuck.
            f"quantbench_run_in_progress{{{BENCH}}}": "1x130",
            f"quantbench_run_start_timestamp_seconds{{{BENCH}}}": "0x130",
            f'quantbench_variant_phase{{{BENCH},variant="bf16",precision="bf16",phase="Benchmarking"}}': "1x130",
            f'quantbench_variant_progress_ratio{{{BENCH},variant="bf16",precision="bf16"}}': (
                "0x30 0.25x30 0.5x30 0.75x40"
            ),
        },
    ),
    Case(
        # Next run due at minute 10 (600 s); nothing started by minute 30.
        "QuantBenchScheduledRunMissed",
        {
            f"quantbench_next_run_timestamp_seconds{{{BENCH}}}": "600x40",
            f"quantbench_run_in_progress{{{BENCH}}}": "0x40",
        },
        "30m",
        {"namespace": "bench", "benchmark": "llama", "severity": "warning"},
        {
            # The run started on time (minute 10) and moved the next run a week ahead.
            f"quantbench_next_run_timestamp_seconds{{{BENCH}}}": "600x10 605400x30",
            f"quantbench_run_in_progress{{{BENCH}}}": "0x10 1x30",
        },
    ),
    Case(
        "QuantBenchOperatorDown",
        {f'up{{job="quantbench-operator",{OPERATOR}}}': "1x5 0x20"},
        "15m",
        {"job": "quantbench-operator", "severity": "critical"},
        {f'up{{job="quantbench-operator",{OPERATOR}}}': "1x25"},
    ),
    Case(
        "QuantBenchOperatorErroring",
        {
            f'quantbench_operator_reconciles_total{{{OPERATOR},result="error"}}': "0+10x40",
            f'quantbench_operator_reconciles_total{{{OPERATOR},result="success"}}': "0+1x40",
        },
        "30m",
        {"namespace": "quantbench-system", "pod": "qb-operator-0", "severity": "warning"},
        {
            f'quantbench_operator_reconciles_total{{{OPERATOR},result="error"}}': "0x10 1x30",
            f'quantbench_operator_reconciles_total{{{OPERATOR},result="success"}}': "0+10x40",
        },
    ),
]


def _unit_rules(rules: dict[str, Any]) -> dict[str, Any]:
    groups = [
        {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
        for g in rules["groups"]
    ]
    return {"groups": groups}


def _series(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": name, "values": v} for name, v in values.items()]


def _promtool_test(tmp_path: Path, rules: dict[str, Any], tests: list[dict[str, Any]]) -> str:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_unit_rules(rules), sort_keys=False))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False
        )
    )
    proc = subprocess.run(
        [_promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_every_alert_has_a_case(rules: dict[str, Any]) -> None:
    names = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert sorted(names) == sorted(ALERTS) == sorted(c.alert for c in CASES)


def test_promtool_check_rules(rules: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "quantbench.rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    proc = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


@pytest.mark.parametrize("case", CASES, ids=[c.alert for c in CASES])
def test_alert_fires_on_the_planted_condition_and_not_on_a_clean_run(
    case: Case, rules: dict[str, Any], tmp_path: Path
) -> None:
    tests = [
        {
            "name": f"{case.alert} fires",
            "interval": "1m",
            "input_series": _series(case.series),
            "alert_rule_test": [
                {"eval_time": case.at, "alertname": case.alert, "exp_alerts": [{"exp_labels": case.labels}]}
            ],
        },
        {
            "name": f"{case.alert} silent on a clean run",
            "interval": "1m",
            "input_series": _series(case.clean),
            "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": []}],
        },
    ]
    _promtool_test(tmp_path, rules, tests)


# A healthy recurring benchmark over 130 minutes: the operator is up and reconciles without error; a run
# started at minute 10, as scheduled, keeps finishing steps; the last run regressed nothing.
HEALTHY = {
    f'up{{job="quantbench-operator",{OPERATOR}}}': "1x130",
    f'quantbench_operator_reconciles_total{{{OPERATOR},result="error"}}': "0x130",
    f'quantbench_operator_reconciles_total{{{OPERATOR},result="success"}}': "0+10x130",
    f'quantbench_regressions{{{BENCH},variant="awq-int4",precision="awq-int4"}}': "0x130",
    f'quantbench_run_phase{{{BENCH},phase="Failed"}}': "0x130",
    f'quantbench_run_phase{{{BENCH},phase="Succeeded"}}': "1x10 0x120",
    f'quantbench_run_phase{{{BENCH},phase="Running"}}': "0x10 1x120",
    f"quantbench_run_in_progress{{{BENCH}}}": "0x10 1x120",
    f"quantbench_run_start_timestamp_seconds{{{BENCH}}}": "0x10 600x120",
    f"quantbench_next_run_timestamp_seconds{{{BENCH}}}": "600x10 605400x120",
    f'quantbench_variant_phase{{{BENCH},variant="bf16",precision="bf16",phase="Benchmarking"}}': "0x10 1x120",
    f'quantbench_variant_progress_ratio{{{BENCH},variant="bf16",precision="bf16"}}': "0x40 0.25x30 0.5x30 0.75x30",
}


def test_no_alert_on_a_healthy_recurring_benchmark(rules: dict[str, Any], tmp_path: Path) -> None:
    """No alert fires at any of the cases' evaluation times on a healthy benchmark and operator."""
    times = sorted({c.at for c in CASES})
    tests = [
        {
            "name": "healthy",
            "interval": "1m",
            "input_series": _series(HEALTHY),
            "alert_rule_test": [
                {"eval_time": at, "alertname": alert, "exp_alerts": []} for at in times for alert in ALERTS
            ],
        }
    ]
    _promtool_test(tmp_path, rules, tests)


def test_thresholds_come_from_values(tmp_path: Path) -> None:
    rules = rendered_rules(
        tmp_path, "--set", "alerts.runStuckMinutes=20", "--set", "alerts.severity.regression=critical"
    )
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert (
        "> 1200" in by_name["QuantBenchRunStuck"]["expr"] and "[20m]" in by_name["QuantBenchRunStuck"]["expr"]
    )
    assert by_name["QuantBenchRegressionDetected"]["labels"]["severity"] == "critical"
