"""The loss system (``router.queue.max_size: 0``) against Erlang B, through the real Router.

M/G/c/c refuses an arrival exactly when all c GPUs are busy; the blocking probability
is Erlang B of the offered load a = lam / mu, whatever the service distribution
(insensitivity), so the deterministic case checks the model, not only the formula.
Each check: about 15,000 arrivals (40,000 where B is 2%) after 500 warm-up, the 0/1
"refused" indicator in arrival order, a 99% batch-means interval
(theory.batch_means_ci) that must hold B.
"""

from pathlib import Path

import pytest

from gpu_router.sim import load_scenario, run_scenario
from gpu_router.sim import theory as th

MMC = Path(__file__).parents[2] / "scenarios" / "mmc.yaml"


def blocked(c, a, dist="exponential", n=15_000, warm=500, seed=1):
    lam = a  # mean service 1 s on H100s: a = lam
    over = {
        "fleet.count": c,
        "workload.load": a / c,
        "workload.service.distribution": dist,
        "router.queue": {"max_size": 0},
        "horizon_s": (n + warm) / lam,
        "warmup_s": warm / lam,
    }
    sc = load_scenario(MMC, over)
    res = run_scenario(sc, "least-loaded", seed)
    req = res.requests
    req = req[(req.submit_s >= sc.warmup_s) & (req.submit_s < sc.horizon_s)]
    assert set(req.outcome) <= {"completed", "rejected"}
    assert (req.wait_s[req.outcome == "completed"] == 0).all()  # nothing ever waits
    return (req.outcome == "rejected").to_numpy(), res


@pytest.mark.parametrize(
    ("c", "a", "dist", "n"),
    [
        (4, 3.0, "exponential", 15_000),  # B = 0.2061
        (8, 8.0, "exponential", 15_000),  # offered load 1.0: stable without a queue, B = 0.2356
        (10, 5.0, "exponential", 40_000),  # B = 0.0184: rarer refusals need more arrivals
        (4, 3.0, "deterministic", 15_000),  # insensitivity: M/D/4/4 blocks like M/M/4/4
    ],
)
def test_blocking_matches_erlang_b(c, a, dist, n):
    refused, res = blocked(c, a, dist, n)
    mean, half = th.batch_means_ci(refused)
    expected = th.erlang_b(c, a)
    assert abs(mean - expected) <= half, f"B={expected:.4f} outside {mean:.4f} +- {half:.4f}"
    assert half < 0.25 * expected  # the interval is tight enough to mean something
    assert (res.requests.error[res.requests.outcome == "rejected"] == "queue_full").all()
