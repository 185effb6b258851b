from __future__ import annotations

import json

import pandas as pd
import pytest

from gpu_router.sweep import results as res
from gpu_router.sweep.grid import parse_sweep
from gpu_router.sweep.runner import run_sweep

from .fakes import failing_cell, fake_cell

KNOWN = ["round-robin", "least-loaded", "earliest-completion"]
pytestmark = pytest.mark.timeout(120)


def make_spec(scen_dir, **extra):
    data = {
        "name": "small",
        "scenarios": ["alpha"],
        "strategies": ["round-robin", "least-loaded"],
        "loads": [0.5, 0.9],
        "seeds": 2,
        **extra,
    }
    return parse_sweep(data, base=scen_dir, known_strategies=KNOWN, check=False)


def deterministic(table: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in table.columns if c not in res.NONDETERMINISTIC]
    return table[cols].sort_values(["cell_id", "priority"]).reset_index(drop=True)


def test_tidy_table_and_cell_folders(scen_dir, tmp_path):
    spec = make_spec(scen_dir, grid={"fleet.count": [2, 3]})
    run = run_sweep(spec, tmp_path / "out", cell_fn=fake_cell, progress=False)
    t = run.table
    assert run.ran == 16 and run.skipped == 0 and not run.failed
    assert len(t) == 16 * 6  # one row per cell and priority
    assert list(t.columns[:7]) == [
        "sweep",
        "cell_id",
        "strategy",
        "scenario",
        "load",
        "seed",
        "fleet.count",
    ]
    assert set(t["priority"]) == {"1", "2", "3", "4", "5", "all"}
    assert t.equals(res.load_results(tmp_path / "out"))
    cell = res.load_cell(tmp_path / "out", t["cell_id"].iloc[0])
    assert len(cell["requests"]) == 200
    assert set(cell["timeline"].columns) == {"t", "queue_length", "gpus_up", "rerouted"}
    assert cell["meta"]["params"]["strategy"] == "round-robin"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["cells"]) == 16 and manifest["swept_keys"] == ["fleet.count"]
    assert not list((tmp_path / "out" / "cells").glob(".tmp-*"))


def test_done_cells_are_skipped(scen_dir, tmp_path):
    out = tmp_path / "out"
    small = make_spec(scen_dir, seeds=1)
    first = run_sweep(small, out, cell_fn=fake_cell, progress=False)
    assert first.ran == 4
    stamp = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/cell.json")}
    seen = []
    bigger = make_spec(scen_dir, seeds=2)
    second = run_sweep(
        bigger, out, cell_fn=fake_cell, progress=False, on_progress=lambda d, n: seen.append((d, n))
    )
    assert (second.ran, second.skipped) == (4, 4)
    assert seen[0] == (4, 8) and seen[-1] == (8, 8)
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp  # untouched
    third = run_sweep(bigger, out, cell_fn=fake_cell, progress=False)
    assert (third.ran, third.skipped) == (0, 8)
    assert deterministic(third.table).equals(deterministic(second.table))


def test_failed_cells_are_reported_and_not_marked_done(scen_dir, tmp_path):
    run = run_sweep(make_spec(scen_dir), tmp_path / "o", cell_fn=failing_cell, progress=False)
    assert run.ran == 4 and len(run.failed) == 4
    assert all("boom" in tb for tb in run.failed.values())
    assert set(run.table["seed"]) == {1}
    for cid in run.failed:
        assert not res.is_done(tmp_path / "o", cid)


def test_processes_give_the_same_rows_as_one_worker(scen_dir, tmp_path):
    spec = make_spec(scen_dir)
    one = run_sweep(spec, tmp_path / "a", cell_fn=fake_cell, workers=1, progress=False)
    two = run_sweep(spec, tmp_path / "b", cell_fn=fake_cell, workers=2, progress=False)
    pd.testing.assert_frame_equal(deterministic(one.table), deterministic(two.table))


def test_progress_bar_shows_cells_rate_and_eta(scen_dir, tmp_path, capsys):
    run_sweep(make_spec(scen_dir), tmp_path / "o", cell_fn=fake_cell, progress=True)
    err = capsys.readouterr().err
    assert "small" in err and "8/8" in err and "cell/s" in err and "<00:00" in err
