"""Per-user quotas and rate limits (DESIGN 3.4; seed API 6.3.4 and ``user_quota_manager``).

Limits per user: requests per minute and per day (GCRA buckets whose burst is the
limit, refilled at limit / window), concurrent requests (queued + running),
concurrent priority requests (priority >= 4) and GPU time in minutes per period
(charged by actual run time into fixed windows ``[k * period, (k + 1) * period)``
of the caller's clock). Times are seconds on the caller's clock.

The seed's ``default_gpu_limit: 2`` is read as "two GPUs' worth of time", so the
default GPU-time quota is 2 * 60 * 24 = 2880 GPU-minutes per day (86400 s).
``default_request_limit: 100`` is the concurrent limit, ``default_priority_limit:
3`` the concurrent priority limit.

Users are created lazily with the defaults; one user's state never touches
another's. An admin change takes effect on the next call for that user; the
rate buckets keep the requests already counted (see ``Gcra.reconfigure``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from .decisions import RejectCode
from .errors import InvalidValue
from .ratelimit import Gcra
from .types import MAX_PRIORITY, MIN_PRIORITY

PRIORITY_THRESHOLD = 4  # priority >= this counts against ``priority_requests``
_INT_FIELDS = (
    "requests_per_minute",
    "requests_per_day",
    "concurrent_requests",
    "priority_requests",
)
# Keys of the seed's PUT /api/v1/admin/user/{id}/quota body, accepted by from_mapping.
SEED_ADMIN_ALIASES = {
    "gpu_time_limit": "gpu_minutes",
    "concurrent_requests_limit": "concurrent_requests",
    "priority_requests_limit": "priority_requests",
}


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """One user's limits. gpu_minutes: GPU-minutes per ``gpu_minutes_period_s`` seconds."""

    requests_per_minute: int = 600
    requests_per_day: int = 100_000
    concurrent_requests: int = 100
    priority_requests: int = 3
    gpu_minutes: float = 2.0 * 60 * 24
    gpu_minutes_period_s: float = 86_400.0

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidValue(name, v, "must be an integer >= 0")
        for name in ("gpu_minutes", "gpu_minutes_period_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InvalidValue(name, v, "must be a finite number")
            if v < 0 or (name == "gpu_minutes_period_s" and v == 0):
                raise InvalidValue(name, v, "must be >= 0" if v < 0 else "must be > 0")

    def replace(self, **changes: object) -> QuotaLimits:
        """A copy with ``changes`` applied (validated; unknown names raise)."""
        known = {f.name for f in fields(self)}
        for key, value in changes.items():
            if key not in known:
                raise InvalidValue(key, value, f"unknown quota limit (known: {sorted(known)})")
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], base: QuotaLimits | None = None
    ) -> QuotaLimits:
        """Limits from a config mapping over ``base`` (default: the defaults); accepts the
        seed's admin keys (``gpu_time_limit``, ...) as aliases."""
        changes = {SEED_ADMIN_ALIASES.get(str(k), str(k)): v for k, v in data.items()}
        return (base or cls()).replace(**changes)


@dataclass(frozen=True, slots=True)
class QuotaRefusal:
    """Why a request is refused: ``code`` is ``rate_limited`` or ``quota_exceeded``;
    ``retry_after_s`` is None when only a completion (or an admin) can free it."""

    code: str
    limit: str
    reason: str
    retry_after_s: float | None


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """One limit: its value, how much is used and left, and ``reset_time`` (absolute
    seconds on the caller's clock) when the used amount returns to zero, or None."""

    limit: float
    used: float
    remaining: float
    reset_time: float | None = None


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """A user's usage, shaped like the seed's GET /api/v1/user/{id}/quota."""

    user_id: str
    gpu_minutes: LimitUsage
    concurrent_requests: LimitUsage
    priority_requests: LimitUsage
    requests_per_minute: LimitUsage
    requests_per_day: LimitUsage


class _User:
    __slots__ = (
        "custom",
        "day",
        "gpu_start",
        "gpu_used_s",
        "limits",
        "minute",
        "priority",
        "running",
        "synced",
    )

    def __init__(self, limits: QuotaLimits) -> None:
        self.limits = limits
        self.custom = False  # True once an admin set this user's limits
        self.synced: QuotaLimits | None = None  # limits the buckets were built for
        self.minute: Gcra | None = None
        self.day: Gcra | None = None
        self.running = 0  # queued + running
        self.priority = 0  # of which priority >= PRIORITY_THRESHOLD
        self.gpu_start = -math.inf  # start of the current GPU-time window
        self.gpu_used_s = 0.0


def _bucket(old: Gcra | None, limit: int, window_s: float, now: float) -> Gcra | None:
    if limit == 0:
        return old  # kept (unused) so that its debt survives a later increase
    if old is None:
        return Gcra(limit / window_s, limit)
    if old.burst != limit or old.rate_per_s != limit / window_s:
        old.reconfigure(limit / window_s, limit, now)
    return old


class QuotaManager:
    """Per-user limits and usage. All calls are O(1)."""

    __slots__ = ("_defaults", "_users")

    def __init__(self, defaults: QuotaLimits | None = None) -> None:
        self._defaults = defaults or QuotaLimits()
        self._users: dict[str, _User] = {}

    def _user(self, user_id: str, now: float | None) -> _User:
        u = self._users.get(user_id)
        if u is None:
            u = self._users[user_id] = _User(self._defaults)
        if now is not None:
            if u.synced is not u.limits:
                lim = u.limits
                u.minute = _bucket(u.minute, lim.requests_per_minute, 60.0, now)
                u.day = _bucket(u.day, lim.requests_per_day, 86_400.0, now)
                u.synced = lim
            period = u.limits.gpu_minutes_period_s
            if now >= u.gpu_start + period:
                u.gpu_start = math.floor(now / period) * period
                u.gpu_used_s = 0.0
        return u

    @property
    def defaults(self) -> QuotaLimits:
        return self._defaults

    def limits(self, user_id: str) -> QuotaLimits:
        u = self._users.get(user_id)
        return u.limits if u is not None else self._defaults

    def set_limits(self, user_id: str, **changes: object) -> QuotaLimits:
        """Admin change of one user's limits; takes effect on that user's next call."""
        u = self._user(user_id, None)
        u.limits = u.limits.replace(**changes)
        u.custom = True
        return u.limits

    def set_defaults(self, **changes: object) -> QuotaLimits:
        """Change the defaults; users whose limits an admin never set follow them."""
        self._defaults = self._defaults.replace(**changes)
        for u in self._users.values():
            if not u.custom:
                u.limits = self._defaults
        return self._defaults

    def _refusal(self, u: _User, priority: int, now: float) -> QuotaRefusal | None:
        """The limit that frees last: one only a completion can free (retry None) first,
        else the longest retry-after, so that retrying then passes every timed limit."""
        if (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not (MIN_PRIORITY <= priority <= MAX_PRIORITY)
        ):
            raise InvalidValue("priority", priority, "must be an integer between 1 and 5")
        lim = u.limits
        if u.running >= lim.concurrent_requests:
            return QuotaRefusal(
                RejectCode.QUOTA_EXCEEDED,
                "concurrent_requests",
                f"concurrent_requests limit {lim.concurrent_requests} reached",
                None,
            )
        if priority >= PRIORITY_THRESHOLD and u.priority >= lim.priority_requests:
            return QuotaRefusal(
                RejectCode.QUOTA_EXCEEDED,
                "priority_requests",
                f"priority_requests limit {lim.priority_requests} reached "
                f"(concurrent requests with priority >= {PRIORITY_THRESHOLD})",
                None,
            )
        worst: QuotaRefusal | None = None
        if u.gpu_used_s >= lim.gpu_minutes * 60.0:
            wait = None if lim.gpu_minutes == 0 else u.gpu_start + lim.gpu_minutes_period_s - now
            worst = QuotaRefusal(
                RejectCode.QUOTA_EXCEEDED,
                "gpu_minutes",
                f"gpu_minutes limit {lim.gpu_minutes:g} per {lim.gpu_minutes_period_s:g} s reached",
                wait,
            )
            if wait is None:
                return worst
        for name, limit, bucket in (
            ("requests_per_day", lim.requests_per_day, u.day),
            ("requests_per_minute", lim.requests_per_minute, u.minute),
        ):
            wait = None if limit == 0 else bucket.peek(now)  # type: ignore[union-attr]
            if wait == 0.0:
                continue
            r = QuotaRefusal(RejectCode.RATE_LIMITED, name, f"{name} limit {limit} reached", wait)
            if wait is None:
                return r
            if worst is None or wait > worst.retry_after_s:  # type: ignore[operator]
                worst = r
        return worst

    def check(self, user_id: str, priority: int, now: float) -> QuotaRefusal | None:
        """What ``admit`` would answer at ``now``, consuming nothing."""
        return self._refusal(self._user(user_id, now), priority, now)

    def admit(self, user_id: str, priority: int, now: float) -> QuotaRefusal | None:
        """Check every limit; if all pass take one request from both rate buckets, one
        concurrent slot and, for priority >= 4, one priority slot. Else take nothing."""
        u = self._user(user_id, now)
        refusal = self._refusal(u, priority, now)
        if refusal is None:
            u.day.take(now)  # type: ignore[union-attr]  # peeked in _refusal
            u.minute.take(now)  # type: ignore[union-attr]
            u.running += 1
            if priority >= PRIORITY_THRESHOLD:
                u.priority += 1
        return refusal

    def restore(self, user_id: str, priority: int, now: float) -> None:
        """Count an already-acknowledged request again (after a restart) without checking
        any limit: it takes its concurrent and priority slots, no rate tokens."""
        u = self._user(user_id, now)
        u.running += 1
        if priority >= PRIORITY_THRESHOLD:
            u.priority += 1

    def release(self, user_id: str, priority: int) -> None:
        """A request admitted with ``priority`` reached a terminal state: free its slots."""
        u = self._users.get(user_id)
        high = priority >= PRIORITY_THRESHOLD
        if u is None or u.running == 0 or (high and u.priority == 0):
            raise InvalidValue("release", (user_id, priority), "no such admitted request")
        u.running -= 1
        if high:
            u.priority -= 1

    def charge_gpu_time(self, user_id: str, seconds: float, now: float) -> None:
        """Add ``seconds`` of actual GPU run time to the window that contains ``now``."""
        if not (seconds.__class__ is float and 0.0 <= seconds < math.inf) and (
            isinstance(seconds, bool)  # the cheap common case above; the full check here
            or not isinstance(seconds, int | float)
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise InvalidValue("seconds", seconds, "must be a finite number >= 0")
        self._user(user_id, now).gpu_used_s += seconds

    def usage(self, user_id: str, now: float) -> QuotaUsage:
        """Every limit of ``user_id`` with used, remaining and reset time at ``now``."""
        u = self._user(user_id, now)
        lim = u.limits
        used_min = u.gpu_used_s / 60.0
        rates = []
        for limit, bucket in ((lim.requests_per_minute, u.minute), (lim.requests_per_day, u.day)):
            left = 0 if limit == 0 else bucket.remaining(now)  # type: ignore[union-attr]
            reset = now if bucket is None else bucket.reset_at(now)
            rates.append(LimitUsage(limit, max(0, limit - left), left, reset))
        return QuotaUsage(
            user_id=user_id,
            gpu_minutes=LimitUsage(
                lim.gpu_minutes,
                used_min,
                max(0.0, lim.gpu_minutes - used_min),
                u.gpu_start + lim.gpu_minutes_period_s,
            ),
            concurrent_requests=LimitUsage(
                lim.concurrent_requests, u.running, max(0, lim.concurrent_requests - u.running)
            ),
            priority_requests=LimitUsage(
                lim.priority_requests, u.priority, max(0, lim.priority_requests - u.priority)
            ),
            requests_per_minute=rates[0],
            requests_per_day=rates[1],
        )
