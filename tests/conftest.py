"""Shared pytest configuration. Fixtures for real servers live in tests/fixtures/ and are
registered here as plugins so every test directory can use them."""

from __future__ import annotations

import os

# Tests never reach a model or dataset hub: everything they read is made locally or comes from ../shared.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytest_plugins: list[str] = [
    "tests.fixtures.cluster",
    "tests.fixtures.node",
    "tests.fixtures.vllm",
    "tests.fixtures.prometheus",
    "tests.fixtures.accuracy",
    "tests.fixtures.images",
]
