"""Outlier ejection: timed cases for counts, ejection times, share cap and slow start."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy.errors import InvalidValue
from gpu_router.policy.outlier import OutlierConfig, OutlierDetector


def fail_n(det: OutlierDetector, gpu: str, n: int, start: float, fleet: int = 10) -> list[bool]:
    return [det.record_failure(gpu, start + k, fleet) for k in range(n)]


def test_nth_consecutive_failure_ejects_for_base_time() -> None:
    det = OutlierDetector()  # 5 failures, 30 s base
    assert fail_n(det, "g", 4, 0.0) == [False] * 4
    assert not det.is_ejected("g", 3.0) and det.consecutive_failures("g") == 4
    assert det.record_failure("g", 4.0, 10) is True
    assert det.ejected_until("g") == 34.0
    assert det.is_ejected("g", 4.0) and det.is_ejected("g", 33.99)
    assert not det.is_ejected("g", 34.0)  # ends by itself
    assert det.ejected_count(10.0) == 1 and det.ejected_count(34.0) == 0


def test_success_resets_the_count() -> None:
    det = OutlierDetector()
    fail_n(det, "g", 4, 0.0)
    det.record_success("g", 4.0)
    assert fail_n(det, "g", 4, 5.0) == [False] * 4
    assert det.record_failure("g", 9.0, 10) is True


def test_failures_while_ejected_do_not_count() -> None:
    det = OutlierDetector(OutlierConfig(consecutive_failures=2))
    assert fail_n(det, "g", 2, 0.0) == [False, True]  # ejected until 31
    assert fail_n(det, "g", 3, 2.0) == [False] * 3
    assert det.consecutive_failures("g") == 0
    assert det.ejected_until("g") == 31.0


def test_ejection_time_grows_and_is_capped() -> None:
    det = OutlierDetector(OutlierConfig(consecutive_failures=1))
    now, lengths = 0.0, []
    for _ in range(12):
        assert det.record_failure("g", now, 10)
        until = det.ejected_until("g")
        assert until is not None
        lengths.append(until - now)
        now = until + 1.0  # fails again right after it returns
    assert lengths[:3] == [30.0, 60.0, 90.0]  # second ejection is 2x base
    assert lengths[9:] == [300.0, 300.0, 300.0]  # capped at max_ejection_s


def test_multiplier_decays_while_in_service() -> None:
    det = OutlierDetector(OutlierConfig(consecutive_failures=1))
    det.record_failure("g", 0.0, 10)  # until 30
    det.record_failure("g", 31.0, 10)  # 2x: until 91
    assert det.times_ejected("g") == 2
    det.record_failure("g", 91.0 + 65.0, 10)  # two full base intervals back: 2 - 2 + 1
    assert det.times_ejected("g") == 1
    assert det.ejected_until("g") == 156.0 + 30.0


def test_share_cap() -> None:
    det = OutlierDetector(OutlierConfig(consecutive_failures=1, max_ejected_share=0.5))
    assert det.record_failure("a", 0.0, 4)  # ejected until 30
    assert det.record_failure("b", 1.0, 4)  # 2 of 4 = the cap
    assert det.record_failure("c", 2.0, 4) is False  # would make 3 of 4
    assert not det.is_ejected("c", 2.0) and det.consecutive_failures("c") == 1
    assert det.ejected_count(2.0) == 2
    assert det.record_failure("c", 30.0, 4)  # a is back: c's next failure ejects it
    assert det.ejected_count(30.0) == 2


@pytest.mark.parametrize(
    ("share", "always_one", "expected"),
    [(0.5, True, True), (0.5, False, False), (0.0, True, False), (1.0, False, True)],
)
def test_one_gpu_fleet(share: float, always_one: bool, expected: bool) -> None:
    det = OutlierDetector(
        OutlierConfig(consecutive_failures=1, max_ejected_share=share, always_eject_one=always_one)
    )
    assert det.record_failure("only", 0.0, 1) is expected


def test_slow_start_weights() -> None:
    det = OutlierDetector(OutlierConfig(consecutive_failures=1))  # 30 s ramp from 0.1
    assert det.weight("g", 0.0) == 1.0  # never ejected
    det.record_failure("g", 0.0, 10)  # until 30
    assert det.weight("g", 10.0) == 0.0
    assert det.weight("g", 30.0) == pytest.approx(0.1)
    assert det.weight("g", 45.0) == pytest.approx(0.55)
    assert det.weight("g", 57.0) == pytest.approx(0.91)
    assert det.weight("g", 60.0) == 1.0
    no_ramp = OutlierDetector(OutlierConfig(consecutive_failures=1, slow_start_s=0.0))
    no_ramp.record_failure("g", 0.0, 10)
    assert no_ramp.weight("g", 30.0) == 1.0


def test_next_change_and_reset() -> None:
    det = OutlierDetector(OutlierConfig(consecutive_failures=1))
    assert det.next_change(0.0) is None
    det.record_failure("a", 0.0, 10)  # until 30
    det.record_failure("b", 10.0, 10)  # until 40
    assert det.next_change(0.0) == 30.0
    assert det.next_change(30.0) == 40.0
    assert det.next_change(40.0) is None
    det.reset("b")
    assert det.next_change(30.0) is None and det.ejected_until("b") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"consecutive_failures": 0},
        {"consecutive_failures": 2.0},
        {"base_ejection_s": 0.0},
        {"max_ejection_s": 10.0},  # below base
        {"max_ejected_share": 1.5},
        {"slow_start_s": -1.0},
        {"slow_start_floor": 0.0},
        {"base_ejection_s": math.inf},
        {"always_eject_one": 1},
    ],
)
def test_config_validated(bad: dict) -> None:
    with pytest.raises(InvalidValue):
        OutlierConfig(**bad)


def test_fleet_size_validated() -> None:
    with pytest.raises(InvalidValue):
        OutlierDetector().record_failure("g", 0.0, 0)


events = st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.floats(0.0, 20.0)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(events=events, share=st.sampled_from([0.0, 0.2, 0.34, 0.5, 1.0]))
def test_share_cap_never_exceeded(events: list, share: float) -> None:
    fleet = 6
    cfg = OutlierConfig(consecutive_failures=2, max_ejected_share=share)
    det = OutlierDetector(cfg)
    cap = max(math.floor(share * fleet), 1 if share > 0 else 0)
    now = 0.0
    for gpu, failed, dt in events:
        now += dt
        gid = f"g{gpu}"
        if failed:
            was = det.is_ejected(gid, now)
            ejected = det.record_failure(gid, now, fleet)
            assert not (was and ejected)
            if ejected:
                assert det.is_ejected(gid, now)
        else:
            det.record_success(gid, now)
        assert det.ejected_count(now) <= cap
        assert 0.0 <= det.weight(gid, now) <= 1.0
