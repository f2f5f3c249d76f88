"""`python -m quantbench_loadgen.publish` outside a pod: clear errors. (Writing into a real ConfigMap with
a Job's service account is covered by the cluster tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from quantbench_loadgen import publish


def test_outside_a_pod_it_says_to_pass_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = tmp_path / "result.json"
    result.write_text("{}")
    assert publish.main(["--configmap", "cm", "--key", "result.json", str(result)]) == 1
    assert "pass --server" in capsys.readouterr().err


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert publish.main(["--configmap", "cm", "--key", "k", str(tmp_path / "nope.json")]) == 1
    assert "nope.json" in capsys.readouterr().err


def test_unreachable_server_and_oversized_results(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    target = publish.in_cluster_target("https://127.0.0.1:9", "ns", str(token), None)
    with pytest.raises(publish.PublishError, match="cannot reach the Kubernetes API"):
        publish.publish(target, "cm", "k", "{}", attempts=1)
    with pytest.raises(publish.PublishError, match="1 MiB"):
        publish.publish(target, "cm", "k", "x" * 1_100_000, attempts=1)
    # Every key counts: a result that fits alone but not beside the Job's input is refused here.
    with pytest.raises(publish.PublishError, match=r"with input.json beside it \(1000\d+ in all\)"):
        publish.publish(target, "cm", "k", "x" * 990_000, attempts=1, alongside={"input.json": 10_000})
