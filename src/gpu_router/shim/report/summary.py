"""A period's figures, computed from the store's records (no I/O, no clock).

Times are the records' wall-clock epoch seconds. ``wait`` is submission to start on a GPU,
``latency`` submission to completion (completed requests only). SLA attainment of a
priority: the share of its requests that ended (completed or failed; cancelled ones are
left out, their user withdrew them) that completed with a wait at most the priority's
target (``queue.max_wait_s``, the bounds the alert rules use). A GPU's busy share: the part
of the period during which at least one request ran on it (requests record the GPU they
last ran on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from gpu_router.shim.store import JournalRecord

PERIOD_S = {"day": 86_400.0, "week": 7 * 86_400.0}
QUANTILES = (50, 95, 99)
ENDED = ("completed", "failed")


@dataclass(frozen=True, slots=True)
class Percentiles:
    n: int
    p50: float
    p95: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        if not values:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        q = np.percentile(np.asarray(values, dtype=float), QUANTILES)
        return cls(len(values), float(q[0]), float(q[1]), float(q[2]), float(np.mean(values)))


@dataclass(frozen=True, slots=True)
class PrioritySla:
    priority: int
    target_s: float
    ended: int
    within: int

    @property
    def attainment(self) -> float:
        return self.within / self.ended if self.ended else float("nan")


@dataclass(frozen=True, slots=True)
class GpuUse:
    gpu_id: str
    requests: int
    failed: int
    redispatched: int  # requests that took more than one attempt and ended here
    busy_s: float
    busy_share: float


@dataclass(frozen=True, slots=True)
class UserUse:
    user_id: str
    requests: int
    completed: int
    failed: int
    gpu_s: float  # run time of its requests (start to completion)


@dataclass(slots=True)
class PeriodSummary:
    period: str
    start: float
    end: float
    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_priority: dict[int, dict[str, int]] = field(default_factory=dict)
    by_user: dict[str, dict[str, int]] = field(default_factory=dict)
    wait: dict[int | str, Percentiles] = field(default_factory=dict)  # priority or "all"
    latency: dict[int | str, Percentiles] = field(default_factory=dict)
    sla: list[PrioritySla] = field(default_factory=list)
    gpus: list[GpuUse] = field(default_factory=list)
    top_users: list[UserUse] = field(default_factory=list)
    errors: list[tuple[str, int]] = field(default_factory=list)  # message, count
    buckets: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # start, states
    anomalies: list[str] = field(default_factory=list)


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end)`` intervals."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(intervals):
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total


def summarize(
    records: Iterable[JournalRecord],
    *,
    period: str,
    start: float,
    targets_s: Mapping[int, float],
    error_threshold: float,
    sla_objective: float = 0.95,
    top: int = 10,
) -> PeriodSummary:
    """The figures of requests submitted in ``[start, start + period)``; ``anomalies``
    name priorities whose attainment is under ``sla_objective`` and GPUs (or the whole
    fleet) whose failed share of ended requests is over ``error_threshold``."""
    end = start + PERIOD_S[period]
    rows = [r for r in records if start <= r.submitted_at < end]
    s = PeriodSummary(period, start, end, total=len(rows))
    s.by_state = dict(Counter(r.state for r in rows).most_common())
    by_priority: dict[int, Counter[str]] = {}
    by_user: dict[str, Counter[str]] = {}
    for r in rows:
        by_priority.setdefault(r.priority, Counter())[r.state] += 1
        by_user.setdefault(r.user_id, Counter())[r.state] += 1
    s.by_priority = {p: dict(c) for p, c in sorted(by_priority.items(), reverse=True)}
    s.by_user = {u: dict(c) for u, c in sorted(by_user.items())}

    waits: dict[int, list[float]] = {}
    lats: dict[int, list[float]] = {}
    for r in rows:
        if r.start_time is not None:
            waits.setdefault(r.priority, []).append(r.start_time - r.submitted_at)
        if r.state == "completed" and r.completion_time is not None:
            lats.setdefault(r.priority, []).append(r.completion_time - r.submitted_at)
    for source, out in ((waits, s.wait), (lats, s.latency)):
        out["all"] = Percentiles.of([v for vs in source.values() for v in vs])
        for p in sorted(source, reverse=True):
            out[p] = Percentiles.of(source[p])

    for p in sorted({r.priority for r in rows}, reverse=True):
        ended = [r for r in rows if r.priority == p and r.state in ENDED]
        within = sum(
            1
            for r in ended
            if r.state == "completed"
            and r.start_time is not None
            and r.start_time - r.submitted_at <= targets_s[p]
        )
        s.sla.append(PrioritySla(p, targets_s[p], len(ended), within))

    span_s = end - start
    on_gpu: dict[str, list[JournalRecord]] = {}
    for r in rows:
        if r.gpu_id:
            on_gpu.setdefault(r.gpu_id, []).append(r)
    for gpu_id, mine in sorted(on_gpu.items()):
        intervals = [
            (max(r.start_time, start), min(r.completion_time, end))
            for r in mine
            if r.start_time is not None and r.completion_time is not None
        ]
        busy = busy_seconds([(a, b) for a, b in intervals if b > a])
        s.gpus.append(
            GpuUse(
                gpu_id,
                len(mine),
                sum(r.state == "failed" for r in mine),
                sum(r.attempts > 1 for r in mine),
                busy,
                busy / span_s,
            )
        )

    users: dict[str, list[JournalRecord]] = {}
    for r in rows:
        users.setdefault(r.user_id, []).append(r)
    uses = [
        UserUse(
            u,
            len(rs),
            sum(r.state == "completed" for r in rs),
            sum(r.state == "failed" for r in rs),
            sum(
                r.completion_time - r.start_time
                for r in rs
                if r.start_time is not None and r.completion_time is not None
            ),
        )
        for u, rs in users.items()
    ]
    s.top_users = sorted(uses, key=lambda u: (-u.requests, -u.gpu_s, u.user_id))[:top]
    s.errors = Counter(r.error or "(no message)" for r in rows if r.state == "failed").most_common(
        top
    )

    step = 3600.0 if period == "day" else 86_400.0
    n_buckets = round(span_s / step)
    counts: list[Counter[str]] = [Counter() for _ in range(n_buckets)]
    for r in rows:
        counts[min(n_buckets - 1, int((r.submitted_at - start) // step))][r.state] += 1
    s.buckets = [(start + i * step, dict(c)) for i, c in enumerate(counts)]

    for sla in s.sla:
        if sla.ended and sla.attainment < sla_objective:
            s.anomalies.append(
                f"priority {sla.priority}: SLA attainment {sla.attainment:.1%} is under "
                f"{sla_objective:.0%} (wait target {sla.target_s:g} s)"
            )
    ended_all = sum(s.by_state.get(k, 0) for k in ENDED)
    failed_all = s.by_state.get("failed", 0)
    if ended_all and failed_all / ended_all > error_threshold:
        s.anomalies.append(
            f"fleet: {failed_all / ended_all:.1%} of ended requests failed "
            f"(error_handler.error_threshold {error_threshold:.0%})"
        )
    for g in s.gpus:
        if g.requests and g.failed / g.requests > error_threshold:
            s.anomalies.append(
                f"{g.gpu_id}: {g.failed / g.requests:.1%} of its requests failed "
                f"(error_handler.error_threshold {error_threshold:.0%})"
            )
    return s
