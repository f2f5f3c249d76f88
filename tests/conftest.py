"""Shared pytest configuration. Fixtures for real servers live in tests/fixtures/ and are
registered here as plugins so every test directory can use them."""

from __future__ import annotations

pytest_plugins: list[str] = [
    "tests.fixtures.cluster",
    "tests.fixtures.vllm",
    "tests.fixtures.prometheus",
    "tests.fixtures.accuracy",
]
