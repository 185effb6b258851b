from pathlib import Path

import pytest

from gpu_router.sim.scenario import ScenarioError, load_scenario, parse_scenario, set_dotted

ROOT = Path(__file__).parents[2] / "scenarios"
#: twin files (scenarios/twin/) hold a scenario inside; tests/twin/test_spec.py loads them
SCENARIOS = sorted(p for p in ROOT.rglob("*.yaml") if p.parent.name != "twin")


def test_defaults_validate():
    sc = parse_scenario({})
    assert sc.horizon_s == 600 and sc.fleet.model == "H100" and sc.workload.load == 0.7


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_file_loads(path):
    sc = load_scenario(path)
    assert sc.name


def test_overrides_by_dotted_key():
    sc = parse_scenario(
        {"fleet": {"groups": [{"model": "H100", "count": 2}]}},
        {"workload.load": 0.9, "fleet.count": 100, "fleet.groups.0.count": 4, "monitor.lag_s": 0},
    )
    assert sc.workload.load == 0.9 and sc.fleet.count == 100
    assert sc.fleet.groups[0].count == 4 and sc.monitor.lag_s == 0


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"workload.load": -1}, "workload.load=-1"),
        ({"fleet.mode": "magic"}, "fleet.mode='magic'"),
        ({"workload.lod": 0.5}, "workload.lod=0.5"),
        ({"monitor.period_s": 0}, "monitor.period_s=0"),
        ({"workload.priorities": {7: 1}}, "priorities"),
        ({"warmup_s": 1000, "horizon_s": 10}, "warmup_s=1000"),
    ],
)
def test_errors_name_key_and_value(overrides, fragment):
    with pytest.raises(ScenarioError) as err:
        parse_scenario({}, overrides)
    assert fragment in str(err.value)


def test_override_into_scalar_is_an_error():
    with pytest.raises(ScenarioError, match="horizon_s"):
        set_dotted({"horizon_s": 3}, "horizon_s.x", 1)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: invalid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "none.yaml")


def test_fault_needs_a_time_or_rate():
    with pytest.raises(ScenarioError, match="at_s or rate_per_gpu_hour"):
        parse_scenario({"faults": [{"kind": "crash"}]})
