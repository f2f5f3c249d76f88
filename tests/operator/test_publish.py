"""`python -m quantbench_loadgen.publish` outside a pod: clear errors. (Writing into a real ConfigMap with
a Job's service account is covered by the cluster tests.)"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest

from quantbench_loadgen import publish
from quantbench_loadgen.accuracy.screening import PublishedResponses


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


def test_a_file_too_large_for_one_configmap_is_cut_into_gzip_pieces_and_the_record_says_how() -> None:
    text = json.dumps([random.Random(i).randbytes(300).hex() for i in range(100)]).encode()  # 60 kB
    parts = publish.split_parts(text, 8, part_bytes=20_000)
    assert len(parts.chunks) == 2 and all(len(c) <= 20_000 for c in parts.chunks)  # ~30 kB compressed
    assert gzip.decompress(b"".join(parts.chunks)) == text
    record = PublishedResponses.model_validate(parts.record())
    assert (
        record.parts == 2 and record.bytes == len(text) and record.gzip_bytes == len(b"".join(parts.chunks))
    )
    assert record.sha256 == hashlib.sha256(b"".join(parts.chunks)).hexdigest() and record.reason is None
    # More pieces than ConfigMaps: nothing is published, and the record says why, with the figures.
    refused = publish.split_parts(text, 1, part_bytes=20_000)
    assert refused.chunks == []
    record = PublishedResponses.model_validate(refused.record())
    assert record.parts == 0 and record.sha256 is None
    assert record.reason == (
        f"{refused.gzip_bytes} bytes gzip-compressed ({len(text)} as text) need 2 ConfigMaps of 20000 bytes, "
        "1 were planned"
    )
    # A small file: one piece, the whole gzip stream.
    small = publish.split_parts(b"{}", 3)
    assert len(small.chunks) == 1 and gzip.decompress(small.chunks[0]) == b"{}"


def test_publishing_pieces_needs_the_record_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that cannot be published is recorded, not an error; only a record that cannot be written is."""
    token = tmp_path / "token"
    token.write_text("t")
    target = publish.in_cluster_target("https://127.0.0.1:9", "ns", str(token), None)
    with pytest.raises(publish.PublishError, match=r"annotation quantbench\.dev/responses"):
        publish.publish_parts(target, "cm", ["cm-0"], "responses.json", None, attempts=1)
    argv = [
        "--configmap",
        "cm",
        "--key",
        "responses.json",
        "--part",
        "cm-0",
        "--server",
        "https://127.0.0.1:9",
    ]
    argv += ["--namespace", "ns", "--token-file", str(token), str(tmp_path / "missing.json")]
    assert publish.main(argv) == 1
    assert "annotation quantbench.dev/responses" in capsys.readouterr().err
