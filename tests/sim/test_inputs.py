"""Scenario inputs a researcher can trust: every bad value is a one-line refusal that
names the key and the value (exit status 2 from ``gpu-router sim``), overload must be
asked for, and the defaults that apply are said in the summary header."""

import json
import math
from pathlib import Path

import pytest

from gpu_router.cli import main
from gpu_router.sim import ScenarioError, parse_scenario, run_scenario

SCEN = Path(__file__).parents[2] / "scenarios"
MMC = str(SCEN / "mmc.yaml")


def refusal(overrides, capsys, strategy="least-loaded"):
    args = ["sim", MMC, "-s", strategy, "--set", "horizon_s=20", "--set", "warmup_s=0"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("sim: mmc.yaml: "), err
    return err


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"workload.load": ".inf"}, "workload.load=inf: Input should be a finite number"),
        ({"workload.load": ".nan"}, "workload.load=nan: Input should be a finite number"),
        ({"horizon_s": ".inf"}, "horizon_s=inf: Input should be a finite number"),
        ({"workload.service.mean_s": "-.inf"}, "workload.service.mean_s=-inf"),
        ({"workload.load": "1e9"}, "workload.load='1e9': Input should be less than or equal to 10"),
        (
            {"fleet.count": 10**9},
            "fleet.count=1000000000: Input should be less than or equal to 100000",
        ),
        ({"horizon_s": 1e12}, "horizon_s=1000000000000.0: Input should be less than or equal"),
        (
            {"monitor.period_s": "1.0e-9"},
            "monitor.period_s=1e-09: Input should be greater than or equal to 0.001",
        ),
        ({"timeline_period_s": 1e-6}, "timeline_period_s=1e-06: 3.82e+09 rows"),
        (
            {"workload.arrival": "{process: mmpp, burst_mean_s: 1.0e-9}"},
            "workload.arrival.burst_mean_s=1e-09: about 2e+09 bursts",
        ),
        (
            {"workload.load": "null", "workload.rate_rps": 1e9},
            "workload.rate_rps=1000000000.0: about 2e+10 requests over horizon_s=20",
        ),
        (
            {"faults": "[{kind: crash, rate_per_gpu_hour: 1.0e+9}]"},
            "faults.0.rate_per_gpu_hour=1000000000.0: about 4.44e+07 events",
        ),
    ],
)
def test_non_finite_and_absurd_numbers_are_refused(overrides, fragment, capsys):
    assert fragment in refusal(overrides, capsys)


def test_the_request_cap_states_its_maximum(capsys):
    err = refusal(
        {"workload.load": 10, "workload.allow_overload": "true", "horizon_s": 1e6}, capsys
    )
    assert "workload.load=10.0: about 8e+07 requests" in err and "at most 10,000,000 per run" in err


def test_overload_needs_allow_overload():
    with pytest.raises(ScenarioError, match=r"workload.load=1.5: offered load 1.5 >= 1"):
        parse_scenario({"workload": {"load": 1.5}})
    assert parse_scenario({"workload": {"load": 1.5, "allow_overload": True}}).workload.load == 1.5
    # a loss system has no queue to grow: it is stable at any load
    assert parse_scenario({"workload": {"load": 3}, "router": {"queue": {"max_size": 0}}})


def test_explicit_rate_over_capacity_is_refused_at_run_time():
    sc = parse_scenario({"horizon_s": 10, "fleet": {"count": 2}, "workload": {"rate_rps": 2.5}})
    with pytest.raises(ScenarioError, match=r"workload.rate_rps=2.5: offered load 1.25 >= 1"):
        run_scenario(sc, "least-loaded", 1)


def test_allowed_overload_is_called_unstable(capsys):
    args = ["sim", MMC, "-s", "least-loaded", "--set", "horizon_s=20", "--set", "warmup_s=0"]
    rc = main([*args, "--set", "workload.load=1.2", "--set", "workload.allow_overload=true"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "note: unstable: offered load 1.2 >= 1" in out
    assert "erlang_c_wait_s absent: no steady state" in out


@pytest.mark.parametrize(
    ("strategy", "router", "fragment"),
    [
        ("power-of-d:d=0", {}, "strategy='power-of-d:d=0': option d=0: must be an integer >= 1"),
        ("power-of-d", {"strategy_options": {"d": 0}}, "router.strategy_options.d=0: must be"),
        (
            "power-of-d",
            {"strategy_options": {"power-of-d": {"d": -1}}},
            "router.strategy_options.d=-1",
        ),
        ("power-of-d:e=1", {}, "strategy='power-of-d:e=1': option strategy_options={'e': 1}"),
        ("no-such", {}, "strategy='no-such': unknown; known:"),
    ],
)
def test_strategy_options_are_labelled_as_strategy_options(strategy, router, fragment):
    sc = parse_scenario({"horizon_s": 5, "router": router})
    with pytest.raises(ScenarioError) as err:
        run_scenario(sc, strategy, 1)
    assert fragment in str(err.value)
    assert "router.d=" not in str(err.value)


def test_defaults_that_apply_are_in_the_header(tmp_path, capsys):
    bare = tmp_path / "bare.yaml"
    bare.write_text("horizon_s: 20\n")
    assert main(["sim", str(bare), "-s", "least-loaded"]) == 0
    out = capsys.readouterr().out
    assert "defaults: fleet: 1 x H100 (the scenario sets no fleet); workload.load: 0.7" in out
    assert main(["sim", str(bare), "-s", "least-loaded", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["defaults"][0] == "fleet: 1 x H100 (the scenario sets no fleet)"
    assert doc["notes"] == []  # Poisson, exponential, one H100: Erlang C applies


def test_erlang_c_only_where_it_applies():
    def erlang(**workload):
        data = {"horizon_s": 30, "fleet": {"count": 2}, "workload": {"load": 0.5, **workload}}
        res = run_scenario(parse_scenario(data), "least-loaded", 1)
        return res.row()["erlang_c_wait_s"], res.info["notes"]

    value, notes = erlang()
    assert value > 0 and notes == []
    for workload, reason in [
        ({"service": {"distribution": "lognormal"}}, "lognormal service is not exponential"),
        ({"arrival": {"process": "mmpp"}}, "mmpp arrivals are not Poisson"),
        ({"types": {"a": {"work_scale": 1}, "b": {"work_scale": 3}}}, "mixture of exponentials"),
    ]:
        value, notes = erlang(**workload)
        assert math.isnan(value) and len(notes) == 1
        assert notes[0].startswith("erlang_c_wait_s absent: ") and reason in notes[0]
