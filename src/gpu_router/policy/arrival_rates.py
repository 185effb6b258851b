"""Admitted work per priority as an exponentially decayed rate (for admission by wait).

``WorkRates.add(priority, work_s, now)`` counts ``work_s`` seconds of estimated work
(on a speed-1.0 GPU) admitted at ``now``; ``above(priority, now)`` is the rate, in
work-seconds per second, admitted at priorities above ``priority`` over about the
last ``window_s`` seconds. Each unit counts with weight ``exp(-age / window_s)``; the
decayed sum over the weight the elapsed time can hold, ``window_s * (1 - exp(-elapsed
/ window_s))``, is the rate, so a constant rate reads true from the start (``elapsed``
counts from the first work seen, and the divisor is at least ``window_s / 4`` so that
the first few units do not read as a burst). Times in seconds on the caller's clock.
"""

from __future__ import annotations

import math

from .types import PRIORITIES

#: the shortest share of the window the rate is measured over (the first moments)
MIN_SPAN_SHARE = 0.25


class WorkRates:
    """Decayed work-rate meters, one per priority."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._sum = dict.fromkeys(PRIORITIES, 0.0)
        self._at = dict.fromkeys(PRIORITIES, 0.0)
        self._since: float | None = None

    def _decayed(self, priority: int, now: float) -> float:
        age = now - self._at[priority]
        total = self._sum[priority]
        if age > 0 and total:
            total *= math.exp(-age / self.window_s)
        return total

    def add(self, priority: int, work_s: float, now: float) -> None:
        """``work_s`` seconds of work admitted at ``priority`` at ``now``."""
        if self._since is None:
            self._since = now
        self._sum[priority] = self._decayed(priority, now) + work_s
        self._at[priority] = max(now, self._at[priority])

    def _span(self, now: float) -> float:
        w = self.window_s
        elapsed = 0.0 if self._since is None else max(0.0, now - self._since)
        return w * max(MIN_SPAN_SHARE, -math.expm1(-elapsed / w))

    def rate(self, priority: int, now: float) -> float:
        """Work-seconds per second admitted at ``priority`` lately."""
        return self._decayed(priority, now) / self._span(now)

    def above(self, priority: int, now: float) -> float:
        """Work-seconds per second admitted at priorities above ``priority`` lately."""
        span = self._span(now)
        return sum(self._decayed(p, now) for p in PRIORITIES if p > priority) / span
