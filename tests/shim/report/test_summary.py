"""Invariants of a period's figures over arbitrary records (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.shim.report.summary import PERIOD_S, busy_seconds, summarize
from gpu_router.shim.store import JournalRecord

START = 1_800_000_000.0
TARGETS = {p: 10.0 * p for p in range(1, 6)}


@st.composite
def records(draw: st.DrawFn) -> list[JournalRecord]:
    out = []
    for i in range(draw(st.integers(0, 40))):
        submitted = START + draw(st.floats(-3600, PERIOD_S["day"] + 3600))
        state = draw(st.sampled_from(["completed", "failed", "cancelled", "queued", "running"]))
        started = draw(st.none() | st.floats(0, 100)) if state != "queued" else None
        run = draw(st.floats(0, 100))
        done = state in ("completed", "failed", "cancelled") and started is not None
        out.append(
            JournalRecord(
                request_id=f"r{i}",
                user_id=draw(st.sampled_from(["a", "b", "c"])),
                model_id="m",
                priority=draw(st.integers(1, 5)),
                body={},
                body_hash="",
                answer={},
                state=state,
                submitted_at=submitted,
                gpu_id=draw(st.sampled_from(["gpu-0", "gpu-1"])) if started is not None else None,
                attempts=draw(st.integers(0, 3)),
                start_time=None if started is None else submitted + started,
                completion_time=submitted + started + run if done and started is not None else None,
                error="boom" if state == "failed" else None,
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(records())
def test_counts_add_up_and_shares_are_shares(rs: list[JournalRecord]) -> None:
    s = summarize(rs, period="day", start=START, targets_s=TARGETS, error_threshold=0.1)
    inside = [r for r in rs if START <= r.submitted_at < START + PERIOD_S["day"]]
    assert s.total == len(inside) == sum(s.by_state.values())
    assert sum(sum(c.values()) for c in s.by_priority.values()) == s.total
    assert sum(sum(c.values()) for c in s.by_user.values()) == s.total
    assert sum(sum(c.values()) for _t, c in s.buckets) == s.total and len(s.buckets) == 24
    assert sum(u.requests for u in s.top_users) == s.total  # 3 users, top 10
    for x in s.sla:
        assert 0 <= x.within <= x.ended
    for g in s.gpus:
        assert 0.0 <= g.busy_share <= 1.0 + 1e-12 and g.failed <= g.requests
    assert s.wait["all"].n == sum(r.start_time is not None for r in inside)
    assert sum(n for _m, n in s.errors) == s.by_state.get("failed", 0)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20)), max_size=20))
def test_busy_seconds_is_the_union_length(spans: list[tuple[int, int]]) -> None:
    intervals = [(float(a), float(a + n)) for a, n in spans]
    covered = {t for a, b in intervals for t in range(int(a), int(b))}
    assert busy_seconds(intervals) == len(covered)
