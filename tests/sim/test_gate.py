from pathlib import Path

import pytest
import yaml

from gpu_router.cli import main
from gpu_router.sim.gate import default_gate_files

SCEN = Path(__file__).parents[2] / "scenarios"


def gate_file(tmp_path, thresholds, name="g.yaml"):
    data = {
        "name": "tiny",
        "horizon_s": 60,
        "warmup_s": 5,
        "fleet": {"model": "H100", "count": 2},
        "workload": {"load": 0.5},
        "router": {"quotas_enabled": False},
        "sla": {"gate": {"strategies": ["least-loaded"], "thresholds": thresholds}},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_gate_files_exist():
    assert {p.name for p in default_gate_files()} >= {"steady_small.yaml"}


def test_gate_passes_and_fails(tmp_path, capsys):
    ok = gate_file(tmp_path, [{"metric": "n_lost", "max": 0}], "ok.yaml")
    assert main(["gate", str(ok)]) == 0
    bad = gate_file(
        tmp_path,
        [
            {"metric": "utilization", "min": 0.99},
            {"metric": "wait_p99_s", "priority": "5", "max": 1},
        ],
        "bad.yaml",
    )
    assert main(["gate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "MISS tiny [least-loaded] utilization" in out
    assert "wait_p99_s(priority 5) = nan" in out  # nothing measured at priority 5: a miss
    assert "2 of 2 thresholds missed" in out


@pytest.mark.parametrize(
    ("threshold", "message"),
    [({"metric": "nope", "max": 1}, "metric='nope'"), ({"metric": "n_lost"}, "set max or min")],
)
def test_gate_rejects_bad_thresholds(tmp_path, capsys, threshold, message):
    assert main(["gate", str(gate_file(tmp_path, [threshold]))]) == 2
    assert message in capsys.readouterr().err


def test_scenario_without_gate_block(capsys):
    assert main(["gate", str(SCEN / "mmc.yaml")]) == 2
    assert "no sla.gate block" in capsys.readouterr().err
