import numpy as np
import pytest

from gpu_router.resources import data_dir
from gpu_router.sim.scenario import ServiceModelSpec
from gpu_router.sim.service_model import (
    FIXTURE,
    Calibration,
    ServiceModel,
    fit_calibration,
    mean_with_floor,
)


def test_frozen_calibration_matches_fixture():
    fitted = fit_calibration(data_dir() / FIXTURE)
    frozen = Calibration()
    assert fitted.floor_ms == pytest.approx(frozen.floor_ms, rel=1e-4)
    assert fitted.ms_per_token == pytest.approx(frozen.ms_per_token, rel=1e-4)
    assert fitted.context_overhead_mb == pytest.approx(frozen.context_overhead_mb, rel=1e-3)
    assert dict(fitted.sharing_gain)[2] == pytest.approx(1.13287, rel=1e-4)
    assert fitted.h2d_gb_s == 51.1


def test_sharing_gives_each_about_one_kth_and_13_to_16_percent_total():
    sm = ServiceModel()
    assert sm.rate(1.0, 1) == 1.0
    for k in (2, 4):
        total = k * sm.rate(1.0, k)
        assert 1.13 <= total <= 1.17
        assert sm.rate(1.0, k) == pytest.approx(total / k)
    assert sm.gain(3) == pytest.approx((1.13287 + 1.1625) / 2, rel=1e-4)
    assert sm.gain(16) == pytest.approx(1.1625)
    assert sm.rate(0.5, 2, factor=0.5) == pytest.approx(0.25 * 1.13287 / 2, rel=1e-4)


def test_floor_memory_and_llm_work():
    sm = ServiceModel()
    assert np.allclose(sm.apply_floor(np.array([0.0, 1.0])), [0.0033565, 1.0])
    assert sm.memory_mb(1000) == pytest.approx(1794.96)
    work = sm.llm_work(np.array([10, 1000]), np.array([0, 100]))
    assert work[0] == pytest.approx(0.0033565)  # launch-bound floor
    assert work[1] == pytest.approx((1000 * sm.prefill_us_per_token / 1e3 + 500) / 1e3)
    assert sm.load_time_s(51.1e9) == pytest.approx(1.0)


def test_overrides():
    sm = ServiceModel(ServiceModelSpec(sharing_gain={1: 1.0, 2: 1.5}, floor_ms=0))
    assert sm.rate(1.0, 2) == 0.75 and sm.cal.floor_s == 0
    assert mean_with_floor(1.0, 0) == 1.0 and mean_with_floor(1.0, 0.1) > 1.0


def test_poll_delay_is_the_first_poll_at_or_after_the_end():
    from gpu_router.sim.service_model import poll_delay_s

    # polls at 0.05, 0.10, ... every 50 ms until 10% of the run exceeds that (0.5 s)
    assert poll_delay_s(0.01, 0.05, 1.0) == pytest.approx(0.04)
    assert poll_delay_s(0.12, 0.05, 1.0) == pytest.approx(0.03)
    # then 10% of the time run: 0.55, 0.605, 0.6655, ...
    assert poll_delay_s(0.56, 0.05, 1.0) == pytest.approx(0.605 - 0.56)
    # at most max apart: past 10 s, every 1 s
    t, polls = 0.05, []
    while t < 30:
        polls.append(t)
        t += min(1.0, max(0.05, 0.1 * t))
    assert poll_delay_s(20.0, 0.05, 1.0) == pytest.approx(min(p for p in polls if p >= 20) - 20)
    assert poll_delay_s(3.0, 0.0, 1.0) == 0.0  # not modelled


def test_dispatch_extra_is_zero_without_overheads():
    from gpu_router.sim.service_model import dispatch_extra, poll_delay_s

    assert dispatch_extra(ServiceModelSpec(), 1.3, 1.0) == 0.0
    sm = ServiceModelSpec(
        dispatch_overhead_s=0.01, dispatch_overhead_share=0.1, poll_interval_s=0.05
    )
    assert dispatch_extra(sm, 0.12, 2.0) == pytest.approx(
        (0.01 + poll_delay_s(0.06, 0.05, 1.0)) * 2.0 + 0.1 * 0.12
    )
