"""Twin files: the bundled ones load, loads are reached, what one side cannot run is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_router.shim.config import config_from_mapping
from gpu_router.sim import draw_workload, run_scenario
from gpu_router.twin import TwinError, TwinSpec, load_twin, scenario_at
from gpu_router.twin.launch import service_config
from gpu_router.twin.spec import offered_load

TWINS = sorted((Path(__file__).parents[2] / "scenarios" / "twin").glob("*.yaml"))


@pytest.mark.parametrize("path", TWINS, ids=lambda p: p.stem)
def test_bundled_twin_files_reach_their_loads(path: Path) -> None:
    spec = load_twin(path)
    for load in spec.loads:
        sc = scenario_at(spec, load)
        assert sc.router["quotas_enabled"] is False
        if sc.workload.trace is not None:  # time-compressed until within 1%
            assert offered_load(sc, spec.seed) == pytest.approx(load, rel=0.01)
        else:
            assert sc.workload.load == load


def test_calibrated_scenario_carries_the_overheads() -> None:
    spec = load_twin(TWINS[0])
    sc = scenario_at(spec, 0.8, calibrated=True)
    assert sc.service_model.dispatch_overhead_s == spec.calibration.dispatch_overhead_s
    assert sc.service_model.dispatch_overhead_share == spec.calibration.dispatch_overhead_share
    assert scenario_at(spec, 0.8).service_model.dispatch_overhead_s == 0


def test_draw_workload_is_the_workload_the_simulator_runs() -> None:
    spec = load_twin(TWINS[0], {"scenario.horizon_s": 20})
    sc = scenario_at(spec, 0.5)
    wl = draw_workload(sc, 3)
    req = run_scenario(sc, "earliest-completion", 3).requests
    assert req["submit_s"].tolist() == wl.arrival_s.tolist()
    assert req["priority"].astype(int).tolist() == wl.priority.tolist()


def spec_with(**scenario: object) -> TwinSpec:
    return TwinSpec.model_validate({"scenario": {"horizon_s": 10, **scenario}})


@pytest.mark.parametrize(
    ("scenario", "match"),
    [
        ({"fleet": {"model": "A100", "count": 2}}, "fleet.model='A100'"),
        ({"fleet": {"count": 2, "mode": "shared", "slots": 2}}, "exclusive"),
        ({"router": {"estimator": {}}}, "router.estimator"),
        ({"router": {"queue": {"max_size": 5, "spread": 1}}}, "queue.spread"),
        ({"faults": [{"kind": "crash", "at_s": 1}]}, "faults"),
    ],
)
def test_what_the_service_cannot_run_is_refused(scenario: dict, match: str) -> None:
    from gpu_router.twin.spec import check

    with pytest.raises(TwinError, match=match):
        check(spec_with(**scenario))


def test_loads_must_be_below_one(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("scenario: {horizon_s: 10}\nloads: [1.2]\n")
    with pytest.raises(TwinError, match=r"loads: 1\.2"):
        load_twin(path)


def test_service_config_says_what_the_scenario_says(tmp_path: Path) -> None:
    spec = spec_with(
        fleet={"model": "H100", "count": 3},
        router={"binding": "early", "queue": {"max_size": 50, "fair_share": False}},
    )
    sc = scenario_at(spec, 0.5)
    cfg = service_config(
        sc, "power-of-d:d=3", ["http://a", "http://b", "http://c"], tmp_path / "j", {"seed": 7}
    )
    assert cfg["gpu_monitoring"]["virtual_gpus"] == 3
    assert cfg["gpu_monitoring"]["worker_urls"]["gpu-2"] == "http://c"
    assert cfg["load_balancer"] == {"strategy": "power-of-d", "d": 3}
    assert cfg["queue"] == {"binding": "early", "max_length": 50, "fair_share": False}
    assert cfg["seed"] == 7
    valid = config_from_mapping(cfg, env={})  # the service accepts it as it is
    assert valid.user_quota_manager.default_priority_limit >= 1_000_000
    with pytest.raises(TwinError, match="option x=1"):
        service_config(sc, "least-loaded:x=1", [], tmp_path / "j", {})
