"""GCRA rate limiter: a token bucket with exact semantics and O(1) state (DESIGN 3.4).

The generic cell rate algorithm keeps one number, the theoretical arrival time
``tat`` (seconds on the caller's clock): the time at which the bucket would be
full again if nothing more were taken. With emission interval ``T = 1 / rate``
and capacity ``burst``, taking ``n`` cells at ``now`` is allowed iff

    max(tat, now) + n * T - now <= burst * T

which is exactly a bucket of ``burst`` tokens refilled at ``rate`` tokens per
second. Hence over any window of length ``W`` at most ``burst + rate * W`` cells
are allowed. No clock is read: every call takes ``now``.

Floating point: the comparison allows a slack of ``_REL_EPS * (1 + |now| +
burst / rate)`` seconds (about 45 ulps) so that a request retried at
exactly ``now + retry_after`` is allowed despite rounding; the bound above then
holds up to ``rate`` times that slack.
"""

from __future__ import annotations

import math

from .errors import InvalidValue

_REL_EPS = 1e-14  # relative slack in the admission comparison (rounding only)


def _check_now(now: float) -> None:
    if not math.isfinite(now):
        raise InvalidValue("now", now, "must be finite")


class Gcra:
    """Limiter of ``rate_per_s`` cells per second with a burst of ``burst`` cells."""

    __slots__ = ("_burst", "_interval", "_rate", "_tat", "_tolerance")

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._configure(rate_per_s, burst)
        self._tat = -math.inf  # bucket full

    def _configure(self, rate_per_s: float, burst: int) -> None:
        if isinstance(rate_per_s, bool) or not isinstance(rate_per_s, int | float):
            raise InvalidValue("rate_per_s", rate_per_s, "must be a number")
        if not math.isfinite(rate_per_s) or rate_per_s <= 0:
            raise InvalidValue("rate_per_s", rate_per_s, "must be finite and > 0")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise InvalidValue("burst", burst, "must be an integer >= 1")
        self._rate = float(rate_per_s)
        self._burst = burst
        self._interval = 1.0 / self._rate
        self._tolerance = burst * self._interval

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def burst(self) -> int:
        return self._burst

    def reconfigure(self, rate_per_s: float, burst: int, now: float) -> None:
        """Change rate and burst at ``now`` keeping the cells in use (the debt in cells).

        A bucket that had ``k`` of its tokens taken still has ``k`` taken (at most
        the new burst), now refilled at the new rate.
        """
        _check_now(now)
        debt = max(0.0, self._tat - now) * self._rate  # cells not yet refilled
        self._configure(rate_per_s, burst)
        debt = min(debt, float(self._burst))
        self._tat = now + debt * self._interval if debt > 0 else -math.inf

    def _wait(self, now: float, n: int) -> float:
        """Seconds until ``n`` cells could be taken (0.0: now); inf if ``n > burst``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidValue("n", n, "must be an integer >= 1")
        _check_now(now)
        if n > self._burst:
            return math.inf
        tat = self._tat if self._tat > now else now
        wait = tat + n * self._interval - self._tolerance - now
        return 0.0 if wait <= self._slack(now) else wait

    def _slack(self, now: float) -> float:
        return _REL_EPS * (1.0 + abs(now) + self._tolerance)

    def peek(self, now: float, n: int = 1) -> float:
        """Like ``try_acquire`` but takes nothing: 0.0 if allowed, else seconds to wait."""
        return self._wait(now, n)

    def try_acquire(self, now: float, n: int = 1) -> float:
        """Take ``n`` cells at ``now``: returns 0.0 if allowed (and taken), else the
        retry-after in seconds (> 0, ``inf`` if ``n > burst``) and takes nothing."""
        wait = self._wait(now, n)
        if wait == 0.0:
            tat = self._tat if self._tat > now else now
            self._tat = tat + n * self._interval
        return wait

    def take(self, now: float) -> None:
        """Take one cell at ``now`` that ``peek(now)`` has just allowed (no checks; the
        same as ``try_acquire(now)`` then)."""
        tat = self._tat if self._tat > now else now
        self._tat = tat + self._interval

    def remaining(self, now: float) -> int:
        """Whole cells that could be taken at ``now``."""
        _check_now(now)
        if self._tat <= now:
            return self._burst
        free = self._burst - (self._tat - now) * self._rate
        return max(0, min(self._burst, math.floor(free + self._slack(now) * self._rate)))

    def used(self, now: float) -> float:
        """Cells taken and not yet refilled at ``now`` (0 .. burst)."""
        _check_now(now)
        return max(0.0, self._tat - now) * self._rate

    def reset_at(self, now: float) -> float:
        """Time (seconds, caller's clock) at which the bucket is full again (``now`` if so)."""
        _check_now(now)
        return self._tat if self._tat > now else now

    def __repr__(self) -> str:
        return f"Gcra(rate_per_s={self._rate!r}, burst={self._burst!r}, tat={self._tat!r})"
