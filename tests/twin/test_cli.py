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
