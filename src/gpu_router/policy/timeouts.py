"""Timeouts per request type and per priority, and the retry policy for timeouts.

A request's timeout (seconds from its submission) is its own ``timeout_s`` when it
gives one; else the shorter of ``by_type[type]`` and ``by_priority[priority]`` where
they are set; else ``RouterConfig.default_timeout_s``; else none. A request still
running when its timeout is up is stopped; with ``retries`` left it is retried as a
failed attempt is (after the retry backoff, at the head of its priority, within
``RetryConfig.max_retries``) with a fresh timeout counted from the end of the backoff
(the backoff also gives the worker time to stop the old attempt), else it ends
``failed`` with error ``timeout``. One still waiting when its timeout is up ends at once (waiting
longer cannot help it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidValue
from .types import PRIORITIES


def _positive(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InvalidValue(key, value, "must be a finite number > 0 (seconds)")


@dataclass(frozen=True)
class TimeoutConfig:
    """``by_type``: request type -> timeout s; ``by_priority``: priority -> timeout s;
    ``retries``: re-runs of a request that timed out while running."""

    by_type: Mapping[str, float] = field(default_factory=dict)
    by_priority: Mapping[int, float] = field(default_factory=dict)
    retries: int = 0

    def __post_init__(self) -> None:
        for t, v in self.by_type.items():
            _positive(f"timeouts.by_type.{t}", v)
        for p, v in self.by_priority.items():
            if p not in PRIORITIES:
                raise InvalidValue(f"timeouts.by_priority.{p}", v, "priorities are 1-5")
            _positive(f"timeouts.by_priority.{p}", v)
        r = self.retries
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise InvalidValue("timeouts.retries", r, "must be an integer >= 0")

    def timeout_for(
        self, own_s: float | None, request_type: str, priority: int, default_s: float | None
    ) -> float | None:
        """The timeout (s) of a request giving ``own_s`` (None: none of its own)."""
        if own_s:
            return own_s
        by_type, by_priority = self.by_type.get(request_type), self.by_priority.get(priority)
        if by_type is None and by_priority is None:
            return default_s
        if by_type is None or by_priority is None:
            return by_type if by_priority is None else by_priority
        return min(by_type, by_priority)
