"""`gpu-router sweep` end to end on the real simulator (a small M/M/c grid)."""

from __future__ import annotations

import pandas as pd
import pytest

from gpu_router.cli import main
from gpu_router.sweep.results import NONDETERMINISTIC, load_results

pytestmark = pytest.mark.timeout(180)

SWEEP = """
name: tiny
scenarios: [mmc]
strategies: [round-robin, join-shortest-queue]
loads: [0.6, 0.9]
seeds: 2
overrides: {horizon_s: 150, warmup_s: 15, fleet.count: 4, router.binding: early}
"""


def test_sweep_cli_runs_skips_and_prints_the_comparison(tmp_path, capsys):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "out"
    assert (
        main(["sweep", str(sweep), "--out", str(out), "--workers", "2", "--plots", "--no-progress"])
        == 0
    )
    text = capsys.readouterr().out
    assert "ran 8, skipped 0 done, failed 0 cells" in text
    assert "Strategy comparison" in text and "join-shortest-queue" in text and "wins" in text
    table = load_results(out)
    assert len(table) == 8 * 6 and set(table["strategy"]) == {"round-robin", "join-shortest-queue"}
    assert (out / "stats.parquet").is_file()
    assert (out / "figures" / "wait_p99_vs_load.svg").is_file()
    # late vs early binding: round-robin's per-GPU queues wait longer than JSQ's
    allp = table[(table.priority == "all") & (table.load == 0.9)]
    mean = allp.groupby("strategy")["wait_mean_s"].mean()
    assert mean["round-robin"] > mean["join-shortest-queue"]
    assert (allp["wait_mean_s"] >= allp["erlang_c_wait_s"] * 0.5).all()

    assert main(["sweep", str(sweep), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "ran 0, skipped 8 done" in capsys.readouterr().out
    again = load_results(out)
    keep = [c for c in table.columns if c not in NONDETERMINISTIC]
    pd.testing.assert_frame_equal(again[keep], table[keep])


def test_sweep_cli_reports_a_bad_key(tmp_path, capsys):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(SWEEP.replace("fleet.count", "fleet.cont"))
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fleet.cont" in err
    assert not (tmp_path / "o").exists()
