"""Schedule times as a CronJob user expects: in the spec's time zone across DST, missed times run once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice

from quantbench.schedule import due, next_time, times_after


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_local_time_follows_spring_forward() -> None:
    got = list(islice(times_after("0 9 * * *", "Europe/Berlin", utc(2026, 3, 27)), 4))
    # 09:00 CET = 08:00 UTC until the clocks move on 29 March, then 09:00 CEST = 07:00 UTC.
    assert got == [utc(2026, 3, 27, 8), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]


def test_skipped_wall_time_runs_after_the_jump_and_repeated_time_runs_once() -> None:
    spring = list(islice(times_after("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12)), 2))
    assert spring == [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]  # 03:30 CEST, then 02:30 CEST
    autumn = list(islice(times_after("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12)), 2))
    assert autumn == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]  # first 02:30 only


def test_default_zone_is_utc() -> None:
    assert next_time("0 3 * * 1", None, utc(2026, 11, 30, 3)) == utc(2026, 12, 7, 3)


def test_missed_times_run_once_for_the_latest() -> None:
    d = due("0 * * * *", None, utc(2026, 1, 1), utc(2026, 1, 1, 5, 30), None)
    assert d.latest == utc(2026, 1, 1, 5) and d.missed == 4 and not d.too_late
    assert d.next == utc(2026, 1, 1, 6)


def test_nothing_due_before_the_next_time() -> None:
    d = due("0 * * * *", None, utc(2026, 1, 1, 5), utc(2026, 1, 1, 5, 59), None)
    assert d.latest is None and d.missed == 0 and d.next == utc(2026, 1, 1, 6)


def test_a_time_past_the_starting_deadline_is_too_late() -> None:
    now = utc(2026, 1, 1, 5, 30)
    assert due("0 * * * *", None, utc(2026, 1, 1, 4, 30), now, 1200).too_late
    assert not due("0 * * * *", None, utc(2026, 1, 1, 4, 30), now, 1800).too_late


def test_far_behind_jumps_to_the_last_time() -> None:
    now = utc(2026, 1, 9, 5, 30, 20)
    d = due("* * * * *", None, utc(2026, 1, 1), now, None)
    assert d.latest == now.replace(second=0) and d.next == now.replace(second=0) + timedelta(minutes=1)
    assert d.missed >= 1000
