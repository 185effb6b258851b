import math

import pytest

from gpu_router.sim import theory as th


def test_erlang_c_known_values():
    # c=1: P(wait) = rho; M/M/1 wait = rho / (mu - lam)
    assert th.erlang_c(0.5, 1.0, 1) == pytest.approx(0.5)
    assert th.mmc_wait(0.5, 1.0, 1) == pytest.approx(1.0)
    # textbook: a = 2 Erlang, c = 3 -> C = 4/9
    assert th.erlang_c(2.0, 1.0, 3) == pytest.approx(4 / 9)
    assert th.mmc_wait(2.0, 1.0, 3) == pytest.approx(4 / 9)
    assert math.isnan(th.mmc_wait_or_nan(5.0, 1.0, 3))
    assert 0 < th.erlang_c(5900.0, 1.0, 6212) < 1e-4  # large c stays finite (Halfin-Whitt)


def test_wait_quantile():
    pw = th.erlang_c(3.2, 1.0, 4)
    assert th.mmc_wait_quantile(3.2, 1.0, 4, 1 - pw - 0.01) == 0.0
    q = th.mmc_wait_quantile(3.2, 1.0, 4, 0.99)
    assert pw * math.exp(-(4 - 3.2) * q) == pytest.approx(0.01)


def test_pk_forms():
    assert th.md1_wait(0.5, 1.0) == pytest.approx(0.5)
    assert th.mm1_wait(0.5, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="need 0 < rho < 1"):
        th.pk_wait(1.0, 1.0, 1.0)


def test_supermarket():
    # d=1 is random dispatch
    assert th.supermarket_sojourn(0.7, 1) == pytest.approx(th.random_dispatch_sojourn(0.7))
    t2 = th.supermarket_sojourn(0.9, 2)
    assert 1.0 < t2 < th.random_dispatch_sojourn(0.9)
    assert th.supermarket_tail(0.9, 2, 2) == pytest.approx(0.9**3)
    assert th.supermarket_wait(0.8, 2) == pytest.approx(th.supermarket_sojourn(0.8, 2) - 1)


def test_erlang_b_known_values():
    assert th.erlang_b(1, 1.0) == pytest.approx(0.5)
    assert th.erlang_b(2, 1.0) == pytest.approx(0.2)  # (1/2) / (1 + 1 + 1/2)
    assert th.erlang_b(0, 3.0) == 1.0
    # tables: B(10, 5) = 0.01838, B(8, 8) = 0.2356
    assert th.erlang_b(10, 5.0) == pytest.approx(0.018385, abs=1e-6)
    assert th.erlang_b(8, 8.0) == pytest.approx(0.235570, abs=1e-6)
    with pytest.raises(ValueError, match="a="):
        th.erlang_b(3, float("nan"))
