"""The service's clock: the one place that reads real time.

``now()`` is monotonic seconds, what the policy Router is given as ``now`` (and what the
GPU sources stamp samples with); ``wall()`` is epoch seconds, for timestamps on the wire
(:func:`iso` formats them).
Tests pass a :class:`ManualClock`.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """Real time: ``time.monotonic`` and ``time.time``."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand; wall time keeps a fixed offset from ``now``."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_750_000_000.0) -> None:
        self.t = start
        self.offset = wall_offset

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + self.offset

    def advance(self, seconds: float) -> None:
        self.t += seconds


_iso_second = -1
_iso_prefix = ""


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a Z, as seed 004 writes them
    (``datetime.fromtimestamp(ts, UTC)`` truncated to ms; the date and time of the last
    second formatted are kept, since most timestamps of an answer fall in it)."""
    global _iso_second, _iso_prefix
    second, micros = divmod(round(ts * 1_000_000), 1_000_000)
    if second != _iso_second:
        _iso_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _iso_second = second
    return f"{_iso_prefix}.{micros // 1000:03d}Z"
