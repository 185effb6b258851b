"""`gpu-router twin`: a bad twin file or override is refused with exit 2 before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_router.cli import main


def test_missing_file_and_bad_override_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["twin", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["twin", "scenarios/twin/poisson.yaml", "--set", "loads"]) == 2
    assert "use key=value" in capsys.readouterr().err
    assert main(["twin", "scenarios/twin/poisson.yaml", "--set", "scenario.fleet.model=T4"]) == 2
    assert "scenario.fleet.model='T4'" in capsys.readouterr().err


def test_prints_each_load_and_the_tally_exit_1_on_a_miss(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the stored run of docs/twin/azure.json (one judged miss at 0.95) in place of a live one
    import json

    from gpu_router.twin import run as twin_run

    stored = json.loads(Path("docs/twin/azure.json").read_text())
    monkeypatch.setattr(twin_run, "run_twin", lambda spec, loads, directory: stored)
    assert main(["twin", "scenarios/twin/azure.yaml"]) == 1
    out = capsys.readouterr().out
    assert out.count("| load | prio |") == 3 and "refit {'dispatch_overhead_s'" in out
    assert "calibrated_vs_service: differ (2 judged; p3 latency_p99_s +10.6%)" in out
    assert "calibrated_vs_service, all loads: judged cells within 10% 5 of 6;" in out
    assert "every priority's p50 and p99 27 of 30" in out
