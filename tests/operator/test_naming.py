from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from quantbench import naming

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_child_names_are_deterministic_and_readable() -> None:
    a = naming.child_name("llama31-8b", "r20261123-030000", "awq-int4", "wl-throughput")
    assert a == "llama31-8b-r20261123-030000-awq-int4-wl-throughput"
    assert a == naming.child_name("llama31-8b", "r20261123-030000", "awq-int4", "wl-throughput")
    assert naming.server_name("b", "r1", "fp8") == "b-r1-fp8-server"
    assert naming.run_config_name("b", "r1") == "b-r1-run"


def test_long_names_are_cut_with_a_stable_hash() -> None:
    bench = "a" * 63
    one = naming.child_name(bench, "r20261123-030000", "variant-one", "wl-throughput")
    two = naming.child_name(bench, "r20261123-030000", "variant-two", "wl-throughput")
    assert len(one) <= 63 and len(two) <= 63
    assert one != two
    assert DNS1035.match(one) and DNS1035.match(two)
    assert one == naming.child_name(bench, "r20261123-030000", "variant-one", "wl-throughput")
    assert re.search(r"-[0-9a-f]{8}$", one)


@pytest.mark.parametrize("parts", [("9lives", "r1"), ("UPPER_case", "r1"), ("x" * 70,), ("a--", "-b")])
def test_names_are_dns1035(parts: tuple[str, ...]) -> None:
    name = naming.dns1035(*parts)
    assert DNS1035.match(name), name
    assert len(name) <= 63


def test_empty_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        naming.dns1035("", "--")


def test_run_ids_are_unique_among_taken() -> None:
    t = datetime(2026, 11, 23, 3, 0, 5, tzinfo=UTC)
    assert naming.run_id(t) == "r20261123-030005"
    assert naming.run_id(t, {"r20261123-030005"}) == "r20261123-030005-2"
    assert naming.run_id(t, {"r20261123-030005", "r20261123-030005-2"}) == "r20261123-030005-3"


def test_labels() -> None:
    lab = naming.labels("bench", "r1", "fp8", "server")
    assert lab == {
        "quantbench.dev/benchmark": "bench",
        "quantbench.dev/run": "r1",
        "quantbench.dev/variant": "fp8",
        "quantbench.dev/step": "server",
        "app.kubernetes.io/managed-by": "quantbench-operator",
    }
    assert naming.selector({"b": "2", "a": "1"}) == "a=1,b=2"
    long = naming.label_value("x" * 80)
    assert len(long) <= 63 and long[-1].isalnum()
