from __future__ import annotations

from pathlib import Path

import pytest

from gpu_router.policy.errors import InvalidValue
from gpu_router.sweep.grid import load_sweep, parse_sweep

KNOWN = ["round-robin", "random", "least-loaded", "earliest-completion"]


def spec(scen_dir: Path, **extra):
    data = {
        "name": "t",
        "scenarios": ["alpha", "beta"],
        "strategies": ["round-robin", "random"],
        "loads": [0.5, 0.9],
        "seeds": 2,
        **extra,
    }
    return parse_sweep(data, base=scen_dir, known_strategies=KNOWN, check=False)


def test_cartesian_product_and_order(scen_dir):
    s = spec(scen_dir, grid={"fleet.count": [10, 100, 1000]})
    assert len(s.cells) == 2 * 2 * 2 * 2 * 3
    assert s.swept_keys == ("fleet.count",)
    assert s.strategies == ["round-robin", "random"]
    assert s.scenarios == ["alpha", "beta"]
    first = s.cells[0]
    assert (first.scenario, first.load, first.strategy, first.seed) == (
        "alpha",
        0.5,
        "round-robin",
        1,
    )
    assert first.scenario_overrides() == {"fleet.count": 10, "workload.load": 0.5}
    assert first.columns()["fleet.count"] == 10
    assert len({c.cell_id for c in s.cells}) == len(s.cells)


def test_cell_id_is_stable_and_depends_on_scenario_bytes(scen_dir):
    a = spec(scen_dir).cells[0].cell_id
    assert a == spec(scen_dir).cells[0].cell_id
    assert len(a) == 16 and int(a, 16) >= 0
    (scen_dir / "alpha.yaml").write_text("name: alpha\nworkload: {load: 0.6}\n")
    assert spec(scen_dir).cells[0].cell_id != a


def test_seed_count_and_list(scen_dir):
    assert {c.seed for c in spec(scen_dir, seeds=3).cells} == {1, 2, 3}
    assert {c.seed for c in spec(scen_dir, seeds=[7, 11]).cells} == {7, 11}


def test_fixed_overrides_apply_to_every_cell(scen_dir):
    s = spec(scen_dir, overrides={"workload.duration_s": 60})
    assert all(dict(c.overrides)["workload.duration_s"] == 60 for c in s.cells)
    assert "workload.duration_s" not in s.cells[0].columns()


def test_no_loads_keeps_scenario_load(scen_dir):
    s = parse_sweep(
        {"scenarios": ["alpha"], "strategies": ["random"]},
        base=scen_dir,
        known_strategies=KNOWN,
        check=False,
    )
    assert [c.load for c in s.cells] == [None]
    assert s.cells[0].scenario_overrides() == {}


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"strategis": ["random"]}, "strategis"),
        ({"strategies": ["random", "nope"]}, "strategies[1]"),
        ({"strategies": []}, "strategies"),
        ({"loads": [0.5, -1]}, "loads[1]"),
        ({"loads": [0.5, "high"]}, "loads[1]"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"seeds": 0}, "seeds"),
        ({"seeds": [1.5]}, "seeds[0]"),
        ({"scenarios": ["alpha", "missing"]}, "scenarios[1]"),
        ({"grid": {"fleet.count": []}}, "grid.fleet.count"),
        ({"grid": {"fleet.count": [{"a": 1}]}}, "grid.fleet.count"),
        ({"grid": {"workload.load": [0.5]}}, "grid.workload.load"),
        ({"grid": ["fleet.count"]}, "grid"),
        ({"overrides": {"fleet.count": 3}, "grid": {"fleet.count": [1, 2]}}, "grid.fleet.count"),
    ],
)
def test_errors_name_the_key(scen_dir, extra, where):
    with pytest.raises(InvalidValue) as err:
        spec(scen_dir, **extra)
    assert err.value.field == where, str(err.value)


def test_required_keys(scen_dir):
    with pytest.raises(InvalidValue, match="strategies"):
        parse_sweep({"scenarios": ["alpha"]}, base=scen_dir, known_strategies=KNOWN, check=False)


def test_check_hook_rejects_bad_scenario_key(scen_dir):
    def check(path, overrides):
        if "fleet.cont" in overrides:
            raise ValueError("fleet.cont: unknown scenario key")

    with pytest.raises(InvalidValue, match=r"fleet\.cont"):
        parse_sweep(
            {"scenarios": ["alpha"], "strategies": ["random"], "grid": {"fleet.cont": [1]}},
            base=scen_dir,
            known_strategies=KNOWN,
            check=check,
        )


def test_load_sweep_from_file(tmp_path, scen_dir):
    f = tmp_path / "s.yaml"
    f.write_text("scenarios: [alpha]\nstrategies: [random]\nloads: [0.8]\nseeds: [4]\n")
    s = load_sweep(f, known_strategies=KNOWN, check=False)
    assert s.name == "s" and len(s.cells) == 1 and s.cells[0].seed == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios: [alpha\n")
    with pytest.raises(InvalidValue, match="not valid YAML"):
        load_sweep(bad, known_strategies=KNOWN, check=False)
    with pytest.raises(InvalidValue, match="no such file"):
        load_sweep(tmp_path / "none.yaml")


def test_default_registry_is_the_policy_registry(scen_dir):
    from gpu_router.policy.strategies import STRATEGIES

    s = parse_sweep(
        {"scenarios": ["alpha"], "strategies": sorted(STRATEGIES)}, base=scen_dir, check=False
    )
    assert len(s.cells) == len(STRATEGIES)


def test_shipped_sweeps_are_valid():
    """Every sweeps/*.yaml parses against the real registry and scenario schema."""
    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "sweeps").glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"default", "strategies_vs_load", "fleet_size", "fault_rates", "seed_targets"} <= names
    for f in files:
        s = load_sweep(f)
        assert s.cells, f
    fleet = load_sweep(root / "sweeps" / "fleet_size.yaml")
    counts = {dict(c.overrides)["fleet.count"] for c in fleet.cells}
    assert min(counts) == 10 and max(counts) == 6212
    loads = {c.load for c in load_sweep(root / "sweeps" / "strategies_vs_load.yaml").cells}
    assert min(loads) == 0.5 and max(loads) == 0.98
