"""`python -m quantbench_loadgen.publish` outside a pod: clear errors. (Writing into a real ConfigMap with
a Job's service account is covered by the cluster tests.)"""

from __future__ import annotations

import random
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


def test_a_gzipped_result_is_sized_compressed_and_one_that_cannot_fit_says_what_to_ask_for(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    target = publish.in_cluster_target("https://127.0.0.1:9", "ns", str(token), None)
    # 2 MB of text that compresses well passes the size check (and then meets the unreachable server).
    text = '{"1234": -0.5, "5678": -1.25}, ' * 70_000
    with pytest.raises(publish.PublishError, match="cannot reach the Kubernetes API"):
        publish.publish(target, "cm", "result.json", text, attempts=1, compress=True)
    # Text that does not compress enough is refused with both sizes and the hint.
    noise = random.Random(0).randbytes(900_000).hex()
    hint = "ask for fewer accuracy.fidelity prompts, maxTokens or topK"
    with pytest.raises(
        publish.PublishError, match=r"gzip-compressed \(1800000 as text\).*accuracy\.fidelity"
    ):
        publish.publish(target, "cm", "result.json", noise, attempts=1, compress=True, hint=hint)
