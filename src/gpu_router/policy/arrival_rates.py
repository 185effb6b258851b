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

from .types import MAX_PRIORITY, PRIORITIES

#: the shortest share of the window the rate is measured over (the first moments)
MIN_SPAN_SHARE = 0.25


class WorkRates:
    """Decayed work-rate meters, one per priority, all decayed to one time (``_at``):
    one ``exp`` per call whatever the number of priorities. Work added at a time before
    ``_at`` counts as added at ``_at``."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._sum = dict.fromkeys(PRIORITIES, 0.0)
        self._at = 0.0
        self._since: float | None = None

    def _factor(self, now: float) -> float:
        age = now - self._at
        return math.exp(-age / self.window_s) if age > 0 else 1.0

    def add(self, priority: int, work_s: float, now: float) -> None:
        """``work_s`` seconds of work admitted at ``priority`` at ``now``."""
        if self._since is None:
            self._since = self._at = now
        elif now > self._at:
            k = self._factor(now)
            sums = self._sum
            for p in PRIORITIES:
                sums[p] *= k
            self._at = now
        self._sum[priority] += work_s

    def _span(self, now: float) -> float:
        w = self.window_s
        elapsed = 0.0 if self._since is None else max(0.0, now - self._since)
        return w * max(MIN_SPAN_SHARE, -math.expm1(-elapsed / w))

    def rate(self, priority: int, now: float) -> float:
        """Work-seconds per second admitted at ``priority`` lately."""
        return self._sum[priority] * self._factor(now) / self._span(now)

    def above(self, priority: int, now: float) -> float:
        """Work-seconds per second admitted at priorities above ``priority`` lately."""
        sums = self._sum
        total = 0.0
        for p in range(priority + 1, MAX_PRIORITY + 1):
            total += sums[p]
        if not total:
            return 0.0
        return total * self._factor(now) / self._span(now)
