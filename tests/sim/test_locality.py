"""Model locality in the simulator: calibrated load times, cold starts, frozen values."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.sim import load_scenario, run_scenario
from gpu_router.sim.model_loads import LoadTimes
from gpu_router.sim.scenario import ModelLoadSpec, ScenarioError

BASE = "traces/alibaba_genai_2026_basemodel_load_ms.csv"


def test_load_times_are_the_measured_distribution() -> None:
    lt = LoadTimes.from_spec(ModelLoadSpec(path=BASE))
    assert len(lt.values) == 7531
    assert lt.quantile(0.5) == pytest.approx(22.718)
    assert lt.quantile(0.99) == pytest.approx(51.8464)
    assert lt.mean_s == pytest.approx(21.9938, abs=1e-4)
    assert lt.sample(np.random.default_rng(1)) == pytest.approx(22.054)
    lora = LoadTimes.from_spec(ModelLoadSpec(path="traces/alibaba_genai_2026_lora_load_ms.csv"))
    assert lora.quantile(0.5) == pytest.approx(4.378)


def test_bad_load_files_are_refused() -> None:
    with pytest.raises(ScenarioError, match=r"model_load\.path"):
        LoadTimes.from_spec(ModelLoadSpec(path=BASE, column="nope"))
    with pytest.raises(ScenarioError, match="no valid load time"):
        LoadTimes(np.array([np.nan, -1.0]))


@pytest.fixture(scope="module")
def short() -> object:
    return load_scenario("scenarios/genai_locality.yaml", {"horizon_s": 1500})


@pytest.mark.parametrize(
    ("strategy", "cold", "warm", "load_s", "p99"),
    [
        ("earliest-completion", 343, 192, 7209.425, 1596.899),
        ("locality-cost", 205, 330, 4304.759, 1239.057),
        ("locality-replicate", 146, 389, 2956.525, 1102.604),
    ],
)
def test_genai_replay_frozen_values(
    short: object, strategy: str, cold: int, warm: int, load_s: float, p99: float
) -> None:
    r = run_scenario(short, strategy, 1)  # type: ignore[arg-type]
    assert r.info["n_requests"] == 535
    assert (r.info["cold_starts"], r.info["warm_starts"]) == (cold, warm)
    assert r.info["load_s_total"] == pytest.approx(load_s, abs=1e-3)
    assert r.row()["latency_p99_s"] == pytest.approx(p99, abs=1e-3)
    assert 0 < r.info["model_gb_per_gpu_mean"] <= 0.17 * 81.559


def test_without_a_models_block_no_locality_is_reported(short: object) -> None:
    sc = short.model_copy(update={"router": {"quotas_enabled": False}})  # type: ignore[attr-defined]
    r = run_scenario(sc, "earliest-completion", 1)
    assert "cold_starts" not in r.info
