import json
from pathlib import Path

from gpu_router.cli import main

SCEN = Path(__file__).parents[2] / "scenarios"


def test_sim_table_and_out(tmp_path, capsys):
    rc = main(
        [
            "sim",
            str(SCEN / "mmc.yaml"),
            "-s",
            "least-loaded",
            "-s",
            "power-of-d:d=2",
            "--set",
            "horizon_s=60",
            "--set",
            "warmup_s=5",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "least-loaded" in out and "power-of-d:d=2" in out and "wait_p99" in out
    assert (tmp_path / "power-of-d_d=2" / "requests.parquet").exists()


def test_sim_json(capsys):
    rc = main(
        [
            "sim",
            str(SCEN / "mmc.yaml"),
            "-s",
            "random",
            "--json",
            "--set",
            "horizon_s=40",
            "--set",
            "warmup_s=0",
        ]
    )
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["summary"]["random"]
    assert [r["priority"] for r in rows] == ["1", "2", "3", "4", "5", "all"]


def test_sim_bad_override_names_key(capsys):
    rc = main(["sim", str(SCEN / "mmc.yaml"), "--set", "workload.load=-2"])
    assert rc == 2
    assert "workload.load=-2" in capsys.readouterr().err
