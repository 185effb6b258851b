"""Per-user quotas: timed table cases per limit, refusal order, admin changes, isolation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.quota import LimitUsage, QuotaLimits, QuotaManager, QuotaRefusal

BIG = {"requests_per_minute": 10_000, "requests_per_day": 1_000_000}


def manager(**limits: object) -> QuotaManager:
    return QuotaManager(QuotaLimits(**{**BIG, **limits}))  # type: ignore[arg-type]


def test_defaults_follow_the_seed() -> None:
    d = QuotaLimits()
    assert (d.requests_per_minute, d.requests_per_day) == (600, 100_000)
    assert (d.concurrent_requests, d.priority_requests) == (100, 3)
    assert d.gpu_minutes == 2880.0 and d.gpu_minutes_period_s == 86_400.0


@pytest.mark.parametrize(
    "bad",
    [
        {"requests_per_minute": -1},
        {"requests_per_day": 1.5},
        {"concurrent_requests": True},
        {"gpu_minutes": math.nan},
        {"gpu_minutes": -1.0},
        {"gpu_minutes_period_s": 0.0},
        {"gpu_minutes_period_s": math.inf},
    ],
)
def test_limits_validated(bad: dict) -> None:
    with pytest.raises(InvalidValue) as err:
        QuotaLimits(**bad)
    assert err.value.field == next(iter(bad))


def test_replace_and_from_mapping() -> None:
    d = QuotaLimits()
    assert d.replace(priority_requests=7).priority_requests == 7
    with pytest.raises(InvalidValue, match="unknown quota limit"):
        d.replace(gpu_hours=1)
    m = QuotaLimits.from_mapping({"gpu_time_limit": 60, "concurrent_requests_limit": 5})
    assert (m.gpu_minutes, m.concurrent_requests, m.requests_per_minute) == (60, 5, 600)
    with pytest.raises(InvalidValue) as err:
        QuotaLimits.from_mapping({"bogus": 1})
    assert err.value.field == "bogus"


def test_requests_per_minute_table() -> None:
    q = manager(requests_per_minute=3)  # burst 3, one back every 20 s
    for now, expected_retry in [
        (0.0, None),
        (0.0, None),
        (0.0, None),
        (0.0, 20.0),
        (10.0, 10.0),
        (20.0, None),
        (20.0, 20.0),
        (100.0, None),
    ]:
        r = q.admit("u", 1, now)
        if expected_retry is None:
            assert r is None, now
            q.release("u", 1)
        else:
            assert r is not None and r.code == "rate_limited"
            assert r.limit == "requests_per_minute" and "3" in r.reason
            assert r.retry_after_s == pytest.approx(expected_retry)


def test_requests_per_day() -> None:
    q = manager(requests_per_day=2)
    assert q.admit("u", 2, 0.0) is None
    assert q.admit("u", 2, 1.0) is None
    r = q.admit("u", 2, 2.0)
    assert r == QuotaRefusal(
        "rate_limited",
        "requests_per_day",
        "requests_per_day limit 2 reached",
        pytest.approx(43_198.0),
    )
    assert q.admit("u", 2, 43_200.0) is None  # one request back per 12 h


def test_concurrent_requests_and_release() -> None:
    q = manager(concurrent_requests=2)
    assert q.admit("u", 1, 0.0) is None
    assert q.admit("u", 5, 0.0) is None
    r = q.admit("u", 1, 0.0)
    assert r is not None and (r.code, r.limit, r.retry_after_s) == (
        "quota_exceeded",
        "concurrent_requests",
        None,
    )
    q.release("u", 1)
    assert q.admit("u", 1, 1.0) is None


def test_priority_requests() -> None:
    q = manager(priority_requests=1)
    assert q.admit("u", 4, 0.0) is None
    r = q.admit("u", 5, 0.0)
    assert r is not None and (r.limit, r.retry_after_s) == ("priority_requests", None)
    assert q.admit("u", 3, 0.0) is None  # low priorities are not counted
    q.release("u", 4)
    assert q.admit("u", 5, 0.0) is None


def test_gpu_minutes_window() -> None:
    q = manager(gpu_minutes=1.0, gpu_minutes_period_s=3600.0)
    q.charge_gpu_time("u", 59.0, 10.0)
    assert q.admit("u", 1, 10.0) is None
    q.charge_gpu_time("u", 1.0, 20.0)
    r = q.admit("u", 1, 20.0)
    assert r is not None and (r.code, r.limit) == ("quota_exceeded", "gpu_minutes")
    assert r.retry_after_s == pytest.approx(3580.0)
    u = q.usage("u", 20.0).gpu_minutes
    assert u == LimitUsage(1.0, 1.0, 0.0, 3600.0)
    assert q.admit("u", 1, 3600.0) is None  # next window
    assert q.usage("u", 3600.0).gpu_minutes == LimitUsage(1.0, 0.0, 1.0, 7200.0)


def test_zero_limits_never_free() -> None:
    for name in ("requests_per_minute", "requests_per_day", "gpu_minutes", "concurrent_requests"):
        r = manager(**{name: 0}).admit("u", 1, 0.0)
        assert r is not None and r.limit == name and r.retry_after_s is None


def test_refusal_order_reports_what_frees_last() -> None:
    q = manager(requests_per_minute=1, requests_per_day=1, concurrent_requests=1)
    assert q.admit("u", 1, 0.0) is None
    r = q.check("u", 1, 0.0)
    assert r is not None and r.limit == "concurrent_requests"  # no timed retry helps
    q.release("u", 1)
    r = q.check("u", 1, 0.0)
    assert r is not None and r.limit == "requests_per_day"  # 86400 s > 60 s
    q2 = manager(requests_per_minute=1, gpu_minutes=1.0, gpu_minutes_period_s=30.0)
    assert q2.admit("u", 1, 0.0) is None
    q2.release("u", 1)
    q2.charge_gpu_time("u", 60.0, 0.0)
    r = q2.check("u", 1, 0.0)
    assert r is not None and r.limit == "requests_per_minute" and r.retry_after_s == 60.0
    assert q2.check("u", 1, 30.0).limit == "requests_per_minute"  # type: ignore[union-attr]
    assert q2.check("u", 1, 60.0) is None  # gpu window renewed at 30, minute token at 60


def test_refusal_and_check_consume_nothing() -> None:
    q = manager(requests_per_minute=2, priority_requests=0)
    before = q.usage("u", 0.0)
    assert q.check("u", 1, 0.0) is None
    assert q.admit("u", 5, 0.0) is not None  # priority refused: minute token not taken
    assert q.usage("u", 0.0) == before
    assert q.admit("u", 1, 0.0) is None
    assert q.usage("u", 0.0).requests_per_minute == LimitUsage(2, 1, 1, 30.0)


def test_admin_change_takes_effect_on_next_request_and_keeps_usage() -> None:
    q = manager(requests_per_minute=10)
    for _ in range(5):
        assert q.admit("u", 1, 0.0) is None
        q.release("u", 1)
    assert q.set_limits("u", requests_per_minute=5).requests_per_minute == 5
    r = q.admit("u", 1, 0.0)  # the 5 already used fill the new bucket
    assert r is not None and r.retry_after_s == pytest.approx(12.0)
    q.set_limits("u", requests_per_minute=20)
    assert q.admit("u", 1, 0.0) is None  # 5 of 20 used
    assert q.usage("u", 0.0).requests_per_minute.used == 6
    q.set_limits("u", concurrent_requests=1)
    assert q.admit("u", 1, 0.0) is not None  # one still running
    assert q.limits("other") == q.defaults  # nobody else changed


def test_set_defaults_reaches_users_without_overrides() -> None:
    q = manager()
    q.admit("a", 1, 0.0)
    q.set_limits("b", priority_requests=9)
    q.set_defaults(priority_requests=1)
    assert q.limits("a").priority_requests == 1
    assert q.limits("b").priority_requests == 9
    assert q.limits("new").priority_requests == 1


def test_release_is_safe_against_double_release() -> None:
    q = manager()
    with pytest.raises(InvalidValue):
        q.release("nobody", 1)
    assert q.admit("u", 2, 0.0) is None
    with pytest.raises(InvalidValue):
        q.release("u", 4)  # was not a priority request
    q.release("u", 2)
    with pytest.raises(InvalidValue):
        q.release("u", 2)
    assert q.usage("u", 0.0).concurrent_requests == LimitUsage(100, 0, 100)


def test_bad_arguments() -> None:
    q = manager()
    with pytest.raises(InvalidValue):
        q.admit("u", 6, 0.0)
    with pytest.raises(InvalidValue):
        q.charge_gpu_time("u", -1.0, 0.0)
    with pytest.raises(InvalidValue):
        q.set_limits("u", concurrent_requests=-1)


def test_usage_shape() -> None:
    q = manager(requests_per_minute=60, requests_per_day=100)
    q.admit("u", 5, 10.0)
    q.charge_gpu_time("u", 90.0, 11.0)
    u = q.usage("u", 11.0)
    assert u.user_id == "u"
    assert u.concurrent_requests == LimitUsage(100, 1, 99)
    assert u.priority_requests == LimitUsage(3, 1, 2)
    assert u.gpu_minutes == LimitUsage(2880.0, 1.5, 2878.5, 86_400.0)
    assert u.requests_per_minute == LimitUsage(60, 0, 60, 11.0)  # refilled after 1 s
    assert u.requests_per_day.used == 1 and u.requests_per_day.reset_time == pytest.approx(874.0)


ops = st.lists(
    st.tuples(
        st.sampled_from(["admit", "release", "charge", "set"]),
        st.sampled_from(["a", "b"]),
        st.integers(1, 5),
        st.floats(0.0, 200.0),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_users_are_isolated(ops: list) -> None:
    """What user b gets is the same whether or not user a exists and acts."""
    limits = QuotaLimits(
        requests_per_minute=3,
        requests_per_day=5,
        concurrent_requests=2,
        priority_requests=1,
        gpu_minutes=1.0,
        gpu_minutes_period_s=100.0,
    )
    both, alone = QuotaManager(limits), QuotaManager(limits)
    held: dict[tuple[int, str], list[int]] = {(0, "a"): [], (0, "b"): [], (1, "b"): []}
    now = 0.0
    for op, user, prio, dt in ops:
        now += dt
        targets = [(0, both)] + ([(1, alone)] if user == "b" else [])
        answers = []
        for k, q in targets:
            if op == "admit":
                r = q.admit(user, prio, now)
                if r is None:
                    held[(k, user)].append(prio)
                answers.append(r)
            elif op == "release" and held[(k, user)]:
                q.release(user, held[(k, user)].pop(0))
            elif op == "charge":
                q.charge_gpu_time(user, dt, now)
            elif op == "set" and user == "a":
                q.set_limits("a", requests_per_minute=prio, concurrent_requests=prio)
            answers.append(q.usage(user, now) if user == "b" else None)
        if user == "b":
            assert answers[: len(answers) // 2] == answers[len(answers) // 2 :]
