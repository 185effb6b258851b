"""Model locality in the simulator: calibrated load times, cold starts, frozen values."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.sim import load_scenario, run_scenario
from gpu_router.sim.model_loads import AdapterLoads, LoadTimes
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
        ("earliest-completion", 329, 202, 6964.920, 1596.021),
        ("locality-cost", 189, 342, 3940.285, 1216.407),
        ("locality-replicate", 145, 386, 2953.757, 1146.838),
    ],
)
def test_genai_replay_frozen_values(
    short: object, strategy: str, cold: int, warm: int, load_s: float, p99: float
) -> None:
    r = run_scenario(short, strategy, 1)  # type: ignore[arg-type]
    assert r.info["n_requests"] == 531
    assert (r.info["cold_starts"], r.info["warm_starts"]) == (cold, warm)
    assert r.info["load_s_total"] == pytest.approx(load_s, abs=1e-3)
    assert r.row()["latency_p99_s"] == pytest.approx(p99, abs=1e-3)
    assert 0 < r.info["model_gb_per_gpu_mean"] <= 0.17 * 81.559
    # LoRA: 112 adapters over the 531 requests, the same draws under every strategy
    assert r.info["adapter_loads"] == 112
    assert r.info["adapter_load_s_total"] == pytest.approx(487.739, abs=1e-3)


@pytest.mark.parametrize(
    ("strategy", "cold", "warm", "load_s", "p99"),
    [
        ("earliest-completion", 343, 192, 7209.425, 1596.899),
        ("locality-cost", 205, 330, 4304.759, 1239.057),
        ("locality-replicate", 146, 389, 2956.525, 1102.604),
    ],
)
def test_without_adapter_loads_the_earlier_values_hold(
    strategy: str, cold: int, warm: int, load_s: float, p99: float
) -> None:
    """The values frozen before LoRA loads were charged (time scale 7.15), bit for bit."""
    over = {"horizon_s": 1500, "workload.trace.time_scale": 7.15}
    sc = load_scenario("scenarios/genai_locality.yaml", over | {"service_model.adapter_load": None})
    r = run_scenario(sc, strategy, 1)
    assert r.info["n_requests"] == 535 and "adapter_loads" not in r.info
    assert (r.info["cold_starts"], r.info["warm_starts"]) == (cold, warm)
    assert r.info["load_s_total"] == pytest.approx(load_s, abs=1e-3)
    assert r.row()["latency_p99_s"] == pytest.approx(p99, abs=1e-3)


def test_adapter_loads_sum_one_draw_per_adapter() -> None:
    times = LoadTimes(np.array([1.0, 2.0, 3.0, 4.0]))
    a = AdapterLoads(times, np.array([0, 2, 1, 3]), np.random.default_rng(7))
    # draws (indices 3, 2 | 2 | 3, 2, 3): 4 + 3, 3, 4 + 3 + 4
    assert [a.charge(i) for i in range(4)] == [0.0, 7.0, 3.0, 11.0]
    assert (a.loads, a.load_s_total) == (6, 21.0)


def test_adapter_loads_need_the_adapter_column(short: object) -> None:
    cols = short.workload.trace.columns.model_copy(update={"adapters": None})  # type: ignore[attr-defined]
    trace = short.workload.trace.model_copy(update={"columns": cols})  # type: ignore[attr-defined]
    sc = short.model_copy(  # type: ignore[attr-defined]
        update={"workload": short.workload.model_copy(update={"trace": trace})}  # type: ignore[attr-defined]
    )
    with pytest.raises(ScenarioError, match=r"columns\.adapters"):
        run_scenario(sc, "earliest-completion", 1)


def test_without_a_models_block_no_locality_is_reported(short: object) -> None:
    sc = short.model_copy(update={"router": {"quotas_enabled": False}})  # type: ignore[attr-defined]
    r = run_scenario(sc, "earliest-completion", 1)
    assert "cold_starts" not in r.info
