"""Timestamps: timezone-aware UTC datetimes outside, integer microseconds inside (no I/O)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

__all__ = ["Clock", "from_micros", "now_micros", "system_clock", "to_micros"]

Clock = Callable[[], datetime]
"""A zero-argument callable returning the current time as an aware datetime."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)  # built once: to_micros runs on every write


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def now_micros(clock: Clock) -> int:
    """``to_micros(clock())``; for the system clock, the same microseconds (both floor the
    system time) without a datetime made and subtracted (~0.4 µs on every write)."""
    if clock is system_clock:
        return time.time_ns() // 1000
    return to_micros(clock())


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware datetime, e.g. with tz=UTC")
    return (moment - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(0, 0, micros)  # positional: a third faster than microseconds=
