"""When a recurring QuantBenchmark runs, as Kubernetes users expect from a CronJob. Pure functions.

Cron fields are read in the spec's ``timeZone`` (UTC by default) on wall-clock time, so a daily 09:00 run stays
at 09:00 local across daylight-saving changes. A wall time the clocks skip (spring forward) runs as far past
the jump as it lay past the change (02:30, on the night the clocks go from 02:00 to 03:00, runs at 03:30); a
wall time that happens twice (fall back) runs once, at its first occurrence.

A schedule is *due* when a schedule time has passed since the last one taken. Several missed times (the
operator was down) start one run, for the latest of them, and none at all when that latest time is older than
``startingDeadlineSeconds``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

# How many missed schedule times are counted before giving up counting (the run still starts once).
MAX_COUNTED_MISSES = 1000


def zone(time_zone: str | None) -> ZoneInfo:
    return ZoneInfo(time_zone or "UTC")


def _to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive wall-clock time in ``tz`` as a UTC instant (the first occurrence of an ambiguous time; a
    skipped time with the offset before the jump, i.e. the same distance past the jump)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def times_after(schedule: str, time_zone: str | None, after: datetime) -> Iterator[datetime]:
    """Schedule times strictly after ``after``, as UTC instants, in order."""
    tz = zone(time_zone)
    # Start an hour early in wall time: around a fall-back change the wall clock of ``after`` can be an hour
    # past schedule times that are still ahead of it.
    it = croniter(schedule, _wall(after, tz) - timedelta(hours=1))
    last: datetime | None = None
    while True:
        wall: datetime = it.get_next(datetime)
        t = _to_utc(wall, tz)
        if t > after and (last is None or t > last):
            last = t
            yield t


def next_time(schedule: str, time_zone: str | None, after: datetime) -> datetime:
    """The first schedule time strictly after ``after`` (UTC)."""
    return next(times_after(schedule, time_zone, after))


@dataclass(frozen=True)
class Due:
    """The schedule times that passed since the last one taken, up to now."""

    latest: datetime | None  # the one to run (or give up), None when nothing is due
    missed: int  # earlier passed times folded into this one (not run)
    too_late: bool  # ``latest`` is older than startingDeadlineSeconds: skip it
    next: datetime  # the first schedule time after now


def due(
    schedule: str,
    time_zone: str | None,
    since: datetime,
    now: datetime,
    starting_deadline_seconds: int | None,
) -> Due:
    """What is due at ``now`` when every schedule time up to ``since`` was taken (run or given up)."""
    latest: datetime | None = None
    counted = 0
    for t in times_after(schedule, time_zone, since):
        if t > now:
            nxt = t
            break
        counted += 1
        latest = t
        if counted > MAX_COUNTED_MISSES:
            # Far behind: jump to the last time before now instead of walking every one.
            tz = zone(time_zone)
            prev_wall: datetime = croniter(schedule, _wall(now, tz)).get_prev(datetime)
            latest = _to_utc(prev_wall, tz)
            while latest > now:
                prev_wall = croniter(schedule, prev_wall).get_prev(datetime)
                latest = _to_utc(prev_wall, tz)
            nxt = next_time(schedule, time_zone, now)
            break
    missed = max(0, counted - 1)
    too_late = (
        latest is not None
        and starting_deadline_seconds is not None
        and (now - latest).total_seconds() > starting_deadline_seconds
    )
    return Due(latest=latest, missed=missed, too_late=too_late, next=nxt)
