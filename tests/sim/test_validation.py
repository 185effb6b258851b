"""The simulator against closed forms (DESIGN 4 "Validation"), through the real Router.

Each check runs a seeded M/M/c-style scenario, estimates the steady-state mean with
a 99% batch-means confidence interval (theory.batch_means_ci) and asserts that the
closed form lies inside it. Default runs use ~15,000 requests per check (interval
half-width ~5-15% of the mean); the ``slow`` versions use 200,000 and heavier
loads (100,000 for the 100-GPU supermarket check, whose per-GPU queues cost
more per decision). docs/simulator.md explains the request counts.
"""

from pathlib import Path

import pytest

from gpu_router.sim import load_scenario, run_scenario
from gpu_router.sim import theory as th

MMC = Path(__file__).parents[2] / "scenarios" / "mmc.yaml"


def measured(overrides, strategy, column, n_requests, seed=1, warm_requests=500):
    """Post-warm-up column of a run with about ``n_requests`` arrivals."""
    c = overrides.get("fleet.count", 1)
    lam = overrides["workload.load"] * c  # mean service 1 s on speed-1 GPUs
    over = {
        **overrides,
        "horizon_s": (n_requests + warm_requests) / lam,
        "warmup_s": warm_requests / lam,
    }
    sc = load_scenario(MMC, over)
    res = run_scenario(sc, strategy, seed)
    req = res.requests
    req = req[(req.submit_s >= sc.warmup_s) & (req.submit_s < sc.horizon_s)]
    assert (req.outcome == "completed").all()
    return req[column].to_numpy(), lam


def assert_in_ci(sample, expected):
    mean, half = th.batch_means_ci(sample)
    assert abs(mean - expected) <= half, f"theory {expected:.4f} outside {mean:.4f} +- {half:.4f}"


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_erlang_c_wait_and_p_wait(rho):
    c = 4
    wait, lam = measured({"fleet.count": c, "workload.load": rho}, "least-loaded", "wait_s", 15_000)
    assert_in_ci(wait, th.mmc_wait(lam, 1.0, c))
    assert_in_ci(wait > 0, th.erlang_c(lam, 1.0, c))


@pytest.mark.slow
@pytest.mark.parametrize("rho", [0.5, 0.8, 0.9])
def test_erlang_c_precise(rho):
    c = 8
    wait, lam = measured(
        {"fleet.count": c, "workload.load": rho}, "least-loaded", "wait_s", 200_000
    )
    assert_in_ci(wait, th.mmc_wait(lam, 1.0, c))
    assert_in_ci(wait > 0, th.erlang_c(lam, 1.0, c))


@pytest.mark.parametrize(
    ("dist", "formula"), [("deterministic", th.md1_wait), ("exponential", th.mm1_wait)]
)
def test_pollaczek_khinchine(dist, formula):
    over = {"fleet.count": 1, "workload.load": 0.7, "workload.service.distribution": dist}
    wait, lam = measured(over, "least-loaded", "wait_s", 15_000)
    assert_in_ci(wait, formula(lam, 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["deterministic", "exponential", "lognormal"])
def test_pollaczek_khinchine_precise(dist):
    cv = {"deterministic": 0.0, "exponential": 1.0, "lognormal": 2.0}[dist]
    over = {
        "fleet.count": 1,
        "workload.load": 0.8,
        "workload.service.distribution": dist,
        "workload.service.cv": cv,
    }
    wait, lam = measured(over, "least-loaded", "wait_s", 200_000)
    assert_in_ci(wait, th.pk_wait(lam, 1.0, 1.0 + cv * cv))


def test_random_dispatch_is_m_m_1_per_gpu():
    over = {"fleet.count": 10, "workload.load": 0.7, "router.binding": "early"}
    sojourn, _ = measured(over, "random", "latency_s", 15_000)
    assert_in_ci(sojourn, th.random_dispatch_sojourn(0.7))


def test_power_of_two_choices_supermarket():
    over = {"fleet.count": 20, "workload.load": 0.7, "router.binding": "early"}
    sojourn, _ = measured(over, "power-of-d:d=2", "latency_s", 15_000)
    assert_in_ci(sojourn, th.supermarket_sojourn(0.7, 2))


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 3])
def test_supermarket_precise(d):
    over = {"fleet.count": 100, "workload.load": 0.9, "router.binding": "early"}
    sojourn, _ = measured(over, f"power-of-d:d={d}", "latency_s", 100_000)
    assert_in_ci(sojourn, th.supermarket_sojourn(0.9, d))


def test_late_binding_beats_per_gpu_queues():
    """Same arrivals and services (same seed): the pooled queue waits least."""
    base = {"fleet.count": 8, "workload.load": 0.85}
    late, _ = measured(base, "least-loaded", "wait_s", 5_000)
    early = {**base, "router.binding": "early"}
    jsq, _ = measured(early, "join-shortest-queue", "wait_s", 5_000)
    rnd, _ = measured(early, "random", "wait_s", 5_000)
    assert late.mean() < jsq.mean() < rnd.mean()
