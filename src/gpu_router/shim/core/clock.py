"""The service's clock: the one place that reads real time.

``now()`` is monotonic seconds, what the policy Router is given as ``now`` (and what the
GPU sources stamp samples with); ``wall()`` is epoch seconds, for timestamps on the wire
(:func:`iso` formats them).
Tests pass a :class:`ManualClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
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


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a Z, as seed 004 writes them
    (truncated to the millisecond)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
