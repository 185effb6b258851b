import pytest

from gpu_router.sim.fleet import (
    alibaba_groups,
    build_fleet,
    capacity,
    scale_counts,
)
from gpu_router.sim.scenario import FleetSpec, ScenarioError


def test_homogeneous_fleet():
    fleet = build_fleet(FleetSpec(model="A100", count=3))
    assert [g.gpu_id for g in fleet] == ["gpu-0000", "gpu-0001", "gpu-0002"]
    assert fleet[0].compute_capability == (8, 0) and fleet[0].speed == 0.45
    assert fleet[0].state().slots == 1 and capacity(fleet) == pytest.approx(1.35)


def test_groups_scale_proportionally():
    spec = FleetSpec(groups=[{"model": "H100", "count": 2}, {"model": "T4", "count": 6}], count=4)
    models = [g.model for g in build_fleet(spec)]
    assert models == ["H100", "T4", "T4", "T4"]
    assert scale_counts([1, 1, 1], 2) == [1, 1, 0]
    assert sum(scale_counts([4392, 842, 312, 265, 204, 195, 2], 100)) == 100


def test_shared_mode_slots_and_exclusive_guard():
    fleet = build_fleet(FleetSpec(mode="shared", slots=4, count=2))
    assert {g.slots for g in fleet} == {4}
    with pytest.raises(ScenarioError, match="exclusive"):
        build_fleet(FleetSpec(groups=[{"model": "H100", "count": 1, "slots": 2}]))


def test_unknown_model_named():
    with pytest.raises(ScenarioError, match="model='Z9'"):
        build_fleet(FleetSpec(model="Z9", count=1))


def test_alibaba_fleet_has_6212_gpus():
    assert dict(alibaba_groups())["G2"] == 4392
    fleet = build_fleet(FleetSpec(source="alibaba"))
    assert len(fleet) == 6212 and fleet[-1].gpu_id == "gpu-6211"
    assert len(build_fleet(FleetSpec(source="alibaba", count=100))) == 100
