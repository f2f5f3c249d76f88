"""A minimal synchronous OpenAI-compatible client for the tests (standard library only), so the tests
check the server's wire format themselves."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any


def post_json(url: str, body: dict[str, Any], timeout_s: float = 120.0) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def stream_events(url: str, body: dict[str, Any], timeout_s: float = 120.0) -> Iterator[dict[str, Any] | str]:
    """Server-sent events of a streaming request: each `data:` payload decoded, `[DONE]` as the string."""
    req = urllib.request.Request(
        url,
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        assert resp.headers.get_content_type() == "text/event-stream", resp.headers.get("Content-Type")
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            payload = line[len("data:") :].strip()
            yield payload if payload == "[DONE]" else json.loads(payload)


def get_text(url: str, timeout_s: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text: str = resp.read().decode()
        return text


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric in Prometheus text format: (labels, value)."""
    out: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        labels: dict[str, str] = {}
        for part in label_text.rstrip("}").split('",'):
            if "=" in part:
                key, _, val = part.partition("=")
                labels[key.strip()] = val.strip().strip('"')
        out.append((labels, float(value)))
    return out
