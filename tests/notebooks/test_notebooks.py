"""Every notebook in notebooks/ runs top to bottom (small configuration) without an error."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_ROUTER_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("GPU_ROUTER_NOTEBOOK_OUT", str(tmp_path / "out"))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert any(p.suffix == ".png" for p in (tmp_path / "out").iterdir())


def test_there_is_a_walkthrough():
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    assert os.path.getsize(NOTEBOOKS[0]) > 5_000
