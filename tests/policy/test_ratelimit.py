"""GCRA limiter: timed table cases and the window-bound property."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.ratelimit import Gcra

# (now, n, expected try_acquire result) for Gcra(rate_per_s=1.0, burst=3)
TABLE = [
    (0.0, 1, 0.0),
    (0.0, 1, 0.0),
    (0.0, 1, 0.0),
    (0.0, 1, 1.0),  # empty: one token back at t=1
    (0.5, 1, 0.5),
    (1.0, 1, 0.0),
    (1.0, 1, 1.0),
    (10.0, 3, 0.0),  # refilled fully after 3 s idle, takes all three at once
    (10.0, 2, 2.0),
    (11.0, 2, 1.0),
    (12.0, 2, 0.0),
    (12.0, 4, math.inf),  # more than the burst: never
]


def test_table_rate_one_burst_three() -> None:
    lim = Gcra(1.0, 3)
    for now, n, expected in TABLE:
        assert lim.try_acquire(now, n) == pytest.approx(expected), (now, n)


def test_refusal_consumes_nothing_and_peek_takes_nothing() -> None:
    lim = Gcra(2.0, 2)  # a token every 0.5 s
    assert lim.peek(0.0) == 0.0
    assert lim.peek(0.0, 2) == 0.0
    assert lim.remaining(0.0) == 2
    assert lim.try_acquire(0.0, 2) == 0.0
    assert lim.remaining(0.0) == 0
    for _ in range(5):
        assert lim.try_acquire(0.1) == pytest.approx(0.4)
    assert lim.peek(0.5) == 0.0
    assert lim.remaining(0.5) == 1
    assert lim.try_acquire(0.5) == 0.0


def test_remaining_reset_at_used() -> None:
    lim = Gcra(10.0, 5)
    assert lim.reset_at(3.0) == 3.0
    assert lim.try_acquire(3.0, 4) == 0.0
    assert lim.remaining(3.0) == 1
    assert lim.used(3.0) == pytest.approx(4.0)
    assert lim.reset_at(3.0) == pytest.approx(3.4)
    assert lim.remaining(3.15) == 2  # 1.5 tokens back -> 2 whole free
    assert lim.remaining(3.4) == 5
    assert lim.used(5.0) == 0.0


def test_reconfigure_keeps_debt() -> None:
    lim = Gcra(1.0, 10)
    assert lim.try_acquire(0.0, 6) == 0.0  # 6 taken
    lim.reconfigure(2.0, 10, now=0.0)
    assert lim.used(0.0) == pytest.approx(6.0)
    assert lim.reset_at(0.0) == pytest.approx(3.0)  # 6 tokens at 2/s
    lim.reconfigure(2.0, 4, now=0.0)  # smaller burst: debt capped at the burst
    assert lim.remaining(0.0) == 0
    assert lim.try_acquire(0.0) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0.0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), (1.0, 0), (1.0, 1.5), (True, 1)],
)
def test_bad_config(rate: float, burst: int) -> None:
    with pytest.raises(InvalidValue):
        Gcra(rate, burst)


def test_bad_call_values() -> None:
    lim = Gcra(1.0, 1)
    with pytest.raises(InvalidValue):
        lim.try_acquire(0.0, 0)
    with pytest.raises(InvalidValue):
        lim.peek(math.nan)


arrivals = st.lists(
    st.tuples(st.floats(0.0, 1.0e4, allow_nan=False), st.integers(1, 3)), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.01, 100.0),
    burst=st.integers(1, 10),
    reqs=arrivals,
    base=st.sampled_from([0.0, -50.0, 1.0e6, 1.0e8]),
)
def test_window_bound_and_exact_retry(rate: float, burst: int, reqs: list, base: float) -> None:
    """Over every window [t_i, t_j]: allowed cells <= burst + rate * (t_j - t_i) (up to
    the documented rounding slack), and a refusal's retry-after is exact."""
    lim = Gcra(rate, burst)
    reqs = sorted((base + t, n) for t, n in reqs)
    allowed: list[tuple[float, int]] = []
    for now, n in reqs:
        before = copy.copy(lim)
        wait = lim.try_acquire(now, n)
        if wait == 0.0:
            allowed.append((now, n))
            continue
        assert wait > 0
        assert lim.used(now) == before.used(now)  # refusal took nothing
        if math.isinf(wait):
            assert n > burst
            continue
        retry = copy.copy(lim)
        early = now + wait - 1e-12 * (1.0 + abs(now) + burst / rate)  # 100x the slack
        if early > now:
            assert retry.peek(early, n) > 0  # not allowed any earlier
        assert retry.try_acquire(now + wait, n) == 0.0  # allowed exactly then
    times = [t for t, _ in allowed]
    cells = [n for _, n in allowed]
    slack = rate * 1e-14 * (1.0 + abs(base) + 1.0e4 + burst / rate) + 1e-9
    for i in range(len(times)):
        total = 0
        for j in range(i, len(times)):
            total += cells[j]
            assert total <= burst + rate * (times[j] - times[i]) + slack, (i, j)
