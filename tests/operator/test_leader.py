"""Who may hold the operator Lease (quantbench.leader.may_take)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quantbench.leader import may_take

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_held_lease_is_taken_only_once_it_expires() -> None:
    held = {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "renewTime": stamp(NOW - timedelta(seconds=10)),
    }
    assert may_take(held, "a", NOW)  # its holder renews
    assert not may_take(held, "b", NOW)
    assert may_take(held, "b", NOW + timedelta(seconds=6))  # 16 s after the last renewal
    assert may_take({}, "b", NOW) and may_take({"holderIdentity": None}, "b", NOW)  # released
