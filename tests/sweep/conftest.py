from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def scen_dir(tmp_path: Path) -> Path:
    """Two scenario files the fake cell function never reads (the grid only hashes them)."""
    d = tmp_path / "scenarios"
    d.mkdir()
    (d / "alpha.yaml").write_text("name: alpha\nworkload: {load: 0.5}\n")
    (d / "beta.yaml").write_text("name: beta\nworkload: {load: 0.5}\n")
    return d
