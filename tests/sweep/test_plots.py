from __future__ import annotations

import pytest

from gpu_router.sweep import plots, record_plots
from gpu_router.sweep.grid import parse_sweep
from gpu_router.sweep.runner import run_sweep

from .fakes import fake_cell

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def result_dir(scen_dir, tmp_path):
    (scen_dir / "gpu_failure.yaml").write_text("name: gpu_failure\n")
    spec = parse_sweep(
        {
            "name": "p",
            "scenarios": ["alpha", "gpu_failure"],
            "strategies": ["round-robin", "earliest-completion"],
            "loads": [0.5, 0.8, 0.95],
            "seeds": 2,
        },
        base=scen_dir,
        known_strategies=["round-robin", "earliest-completion"],
        check=False,
    )
    run_sweep(spec, tmp_path / "out", cell_fn=fake_cell, progress=False)
    return tmp_path / "out"


def test_write_all_writes_png_and_svg(result_dir):
    files = plots.write_all(result_dir)
    names = {p.name for p in files}
    for stem in (
        "latency_cdf",
        "wait_p99_vs_load",
        "wait_mean_vs_load",
        "utilization_vs_load",
        "sla_heatmap",
        "fairness",
        "failure_timeline",
    ):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    for p in files:
        assert p.stat().st_size > 5_000, p
        head = p.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if p.suffix == ".png" else b"<?xml" in head


def test_figures_carry_the_data(result_dir):
    from gpu_router.sweep.results import load_results

    table = load_results(result_dir)
    fig = plots.wait_vs_load_figure(table)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == [
        "Erlang C mean wait (pooled M/M/c)",
        "earliest-completion",
        "round-robin",
    ]
    cdf = record_plots.latency_cdf_figure(result_dir, scenario="alpha", load=0.8)
    lines = cdf.axes[0].get_lines()
    assert len(lines) == 2 and len(lines[0].get_xdata()) == 2 * 200  # two seeds pooled
    tl = record_plots.failure_timeline_figure(result_dir)
    assert "gpu_failure" in tl.axes[0].get_title()
    assert len(tl.axes[1].get_lines()) == 2
    assert record_plots.failure_scenario(table) == "gpu_failure"


def test_swept_key_figures_and_series_labels(scen_dir, tmp_path):
    spec = parse_sweep(
        {
            "name": "k",
            "scenarios": ["alpha"],
            "strategies": ["round-robin"],
            "seeds": 2,
            "grid": {"fleet.count": [2, 4, 8], "router.binding": ["late", "early"]},
        },
        base=scen_dir,
        known_strategies=["round-robin"],
        check=False,
    )
    run_sweep(spec, tmp_path / "k", cell_fn=fake_cell, progress=False)
    names = {p.name for p in plots.write_all(tmp_path / "k", formats=("png",))}
    assert "wait_p99_s_vs_fleet_count.png" in names and "wait_p99_vs_load.png" not in names
    from gpu_router.sweep.results import load_results

    fig = plots.metric_vs_key_figure(load_results(tmp_path / "k"), "fleet.count", "wait_p99_s")
    labels = sorted(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert labels == ["round-robin binding=early", "round-robin binding=late"]
    assert len(fig.axes[0].get_lines()[0].get_xdata()) == 3
