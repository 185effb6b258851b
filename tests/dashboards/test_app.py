"""The dashboard under Streamlit's AppTest: loads a result set, filters, drills, runs a sweep."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from .conftest import APP

# the page's dataframes, in order: comparison, CI table, cell summary, cell requests, waits

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def app(result_dir, monkeypatch):
    monkeypatch.setenv("GPU_ROUTER_RESULTS", str(result_dir))
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    return at


def test_loads_the_result_dir_and_shows_table_and_charts(app, result_dir):
    assert app.text_input(key="results_dir").value == str(result_dir)
    comparison = app.dataframe[0].value
    assert set(comparison.index) == {"round-robin", "least-loaded", "earliest-completion"}
    ci = app.dataframe[1].value
    assert {"scenario", "load", "strategy", "p99 wait (s)"} <= set(ci.columns)
    assert len(ci) == 2 * 3 * 3 and "±" in ci["p99 wait (s)"].iloc[0]
    assert len(app.get("image")) == 4  # one chart per default metric, plus the heatmap
    assert "dash: 36 cells" in app.caption[0].value


def test_filters_narrow_the_comparison(app):
    app.multiselect(key="strategies").set_value(["round-robin", "earliest-completion"]).run()
    app.multiselect(key="scenarios").set_value(["steady"]).run()
    app.multiselect(key="metrics").set_value(["wait_mean_s", "jain_fairness"]).run()
    assert not app.exception
    assert set(app.dataframe[0].value.index) == {"round-robin", "earliest-completion"}
    ci = app.dataframe[1].value
    assert set(ci["scenario"]) == {"steady"} and len(ci) == 2 * 3
    assert list(ci.columns[-2:]) == ["mean wait (s)", "Jain fairness"]
    app.selectbox(key="priority").select("5").run()
    assert not app.exception


def test_drill_into_one_cell(app):
    box = app.selectbox(key="cell")
    assert len(box.options) == 36 and box.options[0].startswith("round-robin | steady | load 0.5")
    box.select_index(7).run()
    assert not app.exception
    assert "| seed 2 |" in app.selectbox(key="cell").value
    assert "'seed': 2" in app.caption[1].value
    requests = app.dataframe[3].value
    assert len(requests) == 200 and "wait_s" in requests
    assert len(app.dataframe[2].value) == 6


def test_missing_dir_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("GPU_ROUTER_RESULTS", str(tmp_path / "none"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert "No results.parquet" in at.sidebar.warning[0].value


def test_run_a_small_sweep_from_the_page(monkeypatch, tmp_path):
    monkeypatch.setenv("GPU_ROUTER_RESULTS", str(tmp_path / "none"))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.multiselect(key="run_scenarios").set_value(["mmc"])
    at.multiselect(key="run_strategies").set_value(["round-robin"])
    at.text_input(key="run_loads").set_value("0.5, 0.8")
    at.number_input(key="run_seeds").set_value(1)
    at.number_input(key="run_horizon").set_value(60)
    out = tmp_path / "page"
    at.text_input(key="run_out").set_value(str(out))
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    assert "ran 2, skipped 0, failed 0" in at.success[0].value
    assert (out / "results.parquet").is_file()
    at.button(key="open_new").click().run()
    assert not at.exception
    assert at.text_input(key="results_dir").value == str(out)
    assert set(at.dataframe[0].value.index) == {"round-robin"}
