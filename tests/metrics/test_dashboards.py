"""The chart's Grafana dashboards: generated, well-formed, documented, and every panel's query answers.

The query test is the one that matters: a real Prometheus scrapes real exporters (the operator's /metrics
over a realistic benchmark, the load generator's live /metrics during a run against a server), the
dashboard variables are resolved the way Grafana resolves them (label_values), and every panel query,
with the variables substituted, must evaluate without error and return at least one series.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantbench.dashboards import DASHBOARDS, render
from quantbench.metrics import METRICS, OPERATOR_METRICS
from tests.fixtures.prometheus import Prometheus
from tests.fixtures.vllm import VllmServer
from tests.loadgen.conftest import ScriptedFactory
from tests.metrics import exporters
from tests.metrics.test_benchmark_series import LOADGEN_METRICS

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "charts" / "quantbench" / "files" / "dashboards"
FILTERS = ("namespace", "benchmark", "model", "variant")
LIVE_VARIANT = "bf16"  # Benchmarking in exporters.benchmark_body: the load and the server are its
PromFactory = Callable[[dict[str, dict[str, str]]], Prometheus]


def _load(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((FOLDER / f"{name}.json").read_text())
    return board


def _queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel or annotation title, query) of every panel target and every annotation."""
    panels = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]
    return panels + [(f"annotation {a['name']}", a["expr"]) for a in board["annotations"]["list"]]


def test_committed_dashboards_are_the_generated_ones() -> None:
    assert sorted(p.stem for p in FOLDER.glob("*.json")) == sorted(DASHBOARDS)
    for name in DASHBOARDS:
        assert (FOLDER / f"{name}.json").read_text() == render(name), "run: make dashboards"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_model(name: str) -> None:
    board = _load(name)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", *FILTERS]
    for a in board["annotations"]["list"]:
        assert a["datasource"]["uid"] == "${datasource}" and a["enable"]
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for f in FILTERS:
        assert variables[f]["datasource"]["uid"] == "${datasource}" and variables[f]["includeAll"]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids) and board["uid"].startswith("quantbench-")
    for p in board["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
    for title, expr in _queries(board):
        # Every query filters by the dashboard's variables.
        assert 'namespace=~"$namespace"' in expr and 'benchmark=~"$benchmark"' in expr, (title, expr)
        for metric in re.findall(r"\b(quantbench_[a-z0-9_]+)", expr):
            family = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert family in METRICS or family in OPERATOR_METRICS or family in LOADGEN_METRICS, metric


def test_chart_readme_lists_every_panel() -> None:
    readme = (REPO / "charts" / "quantbench" / "README.md").read_text()
    for name in DASHBOARDS:
        board = _load(name)
        section = readme.split(f"### {board['title']}", 1)
        assert len(section) == 2, f"the chart README has no section '### {board['title']}'"
        body = section[1].split("\n### ", 1)[0]
        for p in board["panels"]:
            assert f"| {p['title']} |" in body, f"{board['title']}: panel {p['title']!r} is not listed"


def _resolve(prom: Prometheus, board: dict[str, Any], pick: dict[str, str] | None) -> dict[str, str]:
    """Grafana's variable resolution: each label_values() query in order, earlier variables substituted.
    Returns the value each variable takes: All (.*) when `pick` is None, else the value `pick` names (which
    must be among the resolved ones) or the first one."""
    chosen: dict[str, str] = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
        assert m is not None, var["query"]
        values = prom.label_values(m.group(2), _substitute(m.group(1), chosen))
        assert values, f"variable {var['name']} resolves to nothing: {var['query']['query']}"
        if pick is None:
            chosen[var["name"]] = ".*"
            continue
        value = pick.get(var["name"], sorted(values)[0])
        assert value in values, f"{var['name']}: {value!r} is not among {values}"
        chosen[var["name"]] = _grafana_escape(value)
    return chosen


def _grafana_escape(value: str) -> str:
    """How Grafana escapes one value of a multi-value variable inside a PromQL regex."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value)


def _substitute(expr: str, chosen: dict[str, str]) -> str:
    for name, value in chosen.items():
        expr = expr.replace(f"${name}", value)
    return expr


def _evaluate_every_panel(prom: Prometheus, skip: Callable[[str], bool] = lambda _: False) -> int:
    """Wait until the live series have enough samples for rate(), then check every query. Returns the
    number of queries checked."""
    prom.wait_for("rate(quantbench_loadgen_requests_completed_total[1m]) > 0")
    prom.wait_for_scrapes()
    checked = 0
    for name in DASHBOARDS:
        board = _load(name)
        # All values, then one value each: a variant with every figure (it crosses below the baseline,
        # was served at every rate, regressed), or on the live board the one the live targets belong to.
        one = {"variant": LIVE_VARIANT if name == "live" else "awq-int4"}
        for pick in (None, one):
            chosen = _resolve(prom, board, pick)
            for title, expr in _queries(board):
                if skip(expr):
                    continue
                q = _substitute(expr, chosen)
                assert "$" not in q, q
                assert prom.query(q), f"{board['title']} / {title}: no series for {q}"
                checked += 1
    return checked


def _live_labels(variant: str) -> dict[str, str]:
    """The labels the chart's PodMonitors give a server's or a Job's target."""
    return {"namespace": exporters.NAMESPACE, "benchmark": exporters.BENCHMARK, "variant": variant}


def test_every_panel_answers_from_the_operator_and_load_generator(
    prometheus: PromFactory,
    scripted_server: ScriptedFactory,
    scripted_tokenizer: Path,
    tmp_path: Path,
) -> None:
    body = exporters.benchmark_body(tmp_path)
    with (
        exporters.operator_exporter(body) as operator,
        exporters.loadgen_run(scripted_server(itl_ms=2), None, str(scripted_tokenizer)) as loadgen,
    ):
        prom = prometheus({operator.target: {}, loadgen: _live_labels(LIVE_VARIANT)})
        # The vLLM panels need a vLLM server: test_every_panel_answers_with_a_vllm_server has one.
        checked = _evaluate_every_panel(prom, skip=lambda expr: "vllm:" in expr)
    assert checked > 40


@pytest.mark.vllm
def test_every_panel_answers_with_a_vllm_server(
    prometheus: PromFactory, vllm_server: Callable[[str], VllmServer], tmp_path: Path
) -> None:
    body = exporters.benchmark_body(tmp_path)
    server = vllm_server("bf16")
    server_target = server.url.split("://", 1)[1].rstrip("/")
    with (
        exporters.operator_exporter(body) as operator,
        exporters.loadgen_run(server.url, server.served_model_name, str(server.model_path)) as loadgen,
    ):
        prom = prometheus(
            {
                operator.target: {},
                loadgen: _live_labels(LIVE_VARIANT),
                server_target: _live_labels(LIVE_VARIANT),
            }
        )
        checked = _evaluate_every_panel(prom)
    assert checked > 50
