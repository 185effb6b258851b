"""The generic trace reader: CSV or JSONL through a column map, and its one-line refusals."""

import json

import numpy as np
import pytest

from gpu_router.cli import main
from gpu_router.resources import data_dir
from gpu_router.sim import ScenarioError, parse_scenario, run_scenario
from gpu_router.sim.service_model import ServiceModel
from gpu_router.sim.trace_spec import BUILTIN
from gpu_router.sim.traces import read_trace

SM = ServiceModel()


def workload(trace, horizon=1000.0, speed=1.0, **wl):
    spec = parse_scenario({"workload": {"load": None, "trace": trace, **wl}}).workload
    return read_trace(np.random.default_rng(0), spec, SM, speed, horizon)


def refused(trace, fragment, horizon=1000.0):
    with pytest.raises(ScenarioError) as err:
        workload(trace, horizon)
    msg = str(err.value)
    assert "\n" not in msg and fragment in msg, msg
    return msg


@pytest.fixture
def csv(tmp_path):
    def write(text, name="t.csv"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


DURATION = {"arrival": "t", "duration": "d"}


def test_builtin_maps_are_plain_column_maps():
    """kind: azure_llm is the same as its column map written out."""
    path, cols, _skip = BUILTIN["azure_llm"]
    a = workload({"kind": "azure_llm", "limit": 300})
    b = workload({"path": str(data_dir() / path), "columns": cols, "limit": 300})
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.work, b.work)


def test_jsonl_with_every_optional_column(tmp_path):
    rows = [
        {"ts_ms": 5000, "dur_ms": 2000, "m": "big", "who": "alice", "prio": 5, "mem": 40_000},
        {"ts_ms": 1000, "dur_ms": 500, "m": "small", "who": "bob", "prio": 1, "mem": None},
        {"ts_ms": 3000, "dur_ms": 1000, "m": None, "who": None, "prio": None, "mem": 100},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cols = {
        "arrival": "ts_ms",
        "arrival_unit": "ms",
        "duration": "dur_ms",
        "duration_unit": "ms",
        "duration_on": "H100",
        "model": "m",
        "user": "who",
        "priority": "prio",
        "memory": "mem",
    }
    models = [
        {"id": "default", "memory_mb": 7.0},
        {"id": "big", "memory_mb": 1.0, "work_scale": 2.0},
    ]
    wl = workload({"path": str(path), "columns": cols}, speed=0.5, models=models)
    # sorted by arrival, seconds from the first arrival
    assert wl.arrival_s.tolist() == [0.0, 2.0, 4.0]
    assert wl.work.tolist() == [0.5, 1.0, 4.0]  # H100-seconds; "big" doubles its work
    assert [wl.model_ids[i] for i in wl.model_idx] == ["small", "default", "big"]
    assert [wl.user_names[i] for i in wl.user][0::2] == ["bob", "alice"]
    assert wl.priority[0] == 1 and wl.priority[2] == 5
    assert wl.memory_mb.tolist() == [0.0, 100.0, 40_000.0]  # small: unknown model, no memory


def test_datetime_arrivals_span_and_count(csv):
    path = csv("when,a,b,n\n2024-01-01 00:00:10,1,4,2\n2024-01-01 00:00:00,2,3,1\n")
    cols = {"arrival": "when", "arrival_unit": "datetime", "start": "a", "end": "b", "count": "n"}
    wl = workload({"path": path, "columns": cols}, speed=0.5)
    assert wl.arrival_s.tolist() == [0.0, 10.0, 10.0]  # a row of count 2 is two requests
    assert wl.work.tolist() == [0.5, 1.5, 1.5]  # seconds on the fleet's mean GPU (speed 0.5)


@pytest.mark.parametrize(
    ("text", "cols", "fragment"),
    [
        ("a,b\n1,2\n", DURATION, "no column 't' (trace.columns.arrival); its columns: a, b"),
        ("t,d\n1,2\nx,3\n", DURATION, "column 't' row 2 (line 3): 'x' is not a number"),
        (
            "t,d\n1,2\n2,\n",
            DURATION,
            "column 'd' row 2 (line 3): (empty) is missing (trace.columns.duration",
        ),
        ("t,d\n1,2\n2,-1\n", DURATION, "column 'd' row 2 (line 3): -1 is negative"),
        (
            "t,d\n2024-01-01,1\nyesterday,1\n",
            {"arrival": "t", "arrival_unit": "datetime", "duration": "d"},
            "column 't' row 2 (line 3): 'yesterday' is not a date (mixed)",
        ),
        ("", DURATION, "empty file (no header)"),
        ("t,d\n", DURATION, "no rows"),
        (
            "t,d,p\n1,1,urgent\n",
            {**DURATION, "priority": "p", "priority_map": {"high": 5}},
            "column 'p' row 1 (line 2): 'urgent' is not in trace.columns.priority_map",
        ),
        (
            "t,d,p\n1,1,9\n",
            {**DURATION, "priority": "p"},
            "'p' row 1 (line 2): 9 is not a priority",
        ),
    ],
)
def test_trace_errors_name_file_column_row_and_value(csv, text, cols, fragment):
    path = csv(text)
    msg = refused({"path": path, "columns": cols, "start_s": 0}, fragment, horizon=100.0)
    assert msg.startswith(f"workload.trace.path={path!r}: ")


def test_windowing_error_says_what_the_trace_spans(csv):
    msg = refused({"path": csv("t,d\n5000,1\n6000,1\n"), "columns": DURATION, "start_s": 2000}, "")
    assert "start_s=2000" in msg and "the trace spans 0..1000 s" in msg


def test_another_format_given_to_a_builtin_kind_names_the_missing_column():
    azure = str(data_dir() / BUILTIN["azure_llm"][0])
    refused(
        {"kind": "alibaba_pods", "path": azure},
        "no column 'creation_time' (trace.columns.arrival); its columns: TIMESTAMP,",
    )


def test_skip_invalid_drops_bad_rows(csv):
    path = csv("t,d\n1,2\n2,\n3,0\n4,-1\n5,1\n")
    wl = workload({"path": path, "columns": DURATION, "skip_invalid": True})
    assert wl.arrival_s.tolist() == [0.0, 4.0] and wl.work.tolist() == [2.0, 1.0]


@pytest.mark.parametrize(
    ("trace", "fragment"),
    [
        ({"path": "x.csv"}, "trace: set kind (azure_llm, alibaba_pods), or path and columns"),
        ({"path": "x.csv", "columns": {"arrival": "t"}}, "name the work as exactly one of"),
        ({"path": "x.csv", "columns": {"arrival": "t", "start": "s"}}, "start and end go together"),
        ({"path": "x.csv", "columns": {"duration": "d"}}, "trace.columns.arrival: name the"),
        ({"kind": "azure_llm", "columns": {"arrival_unit": "hours"}}, "arrival_unit='hours'"),
        (
            {"kind": "azure_llm", "time_scale": float("inf")},
            "time_scale=inf: Input should be a finite",
        ),
    ],
)
def test_column_maps_are_checked_on_load(trace, fragment):
    with pytest.raises(ScenarioError) as err:
        parse_scenario({"workload": {"load": None, "trace": trace}})
    assert fragment in str(err.value)


def test_cli_refuses_a_bad_trace_with_status_2(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("t,d\n1,2\n2,oops\n")
    scen = tmp_path / "s.yaml"
    scen.write_text(
        f"horizon_s: 10\nworkload:\n  load: null\n  trace:\n    path: {trace}\n"
        "    columns: {arrival: t, duration: d}\n"
    )
    assert main(["sim", str(scen), "-s", "least-loaded"]) == 2
    err = capsys.readouterr().err
    where = f"sim: s.yaml: workload.trace.path={str(trace)!r}: "
    assert err == where + "column 'd' row 2 (line 3): 'oops' is not a number\n"


def test_trace_replays_run_without_quotas_unless_set(csv):
    path = csv("t,d\n" + "".join(f"{i * 0.01},0.5\n" for i in range(400)))
    base = {"horizon_s": 10, "fleet": {"count": 4}, "monitor": {"enabled": False}}
    trace = {"load": None, "trace": {"path": path, "columns": DURATION}, "users": {"count": 1}}
    free = run_scenario(parse_scenario({**base, "workload": trace}), "least-loaded", 1)
    assert free.row()["n_rejected"] == 0
    assert "router.quotas_enabled: false (trace replay)" in free.info["defaults"]
    quotas = {"requests_per_minute": 60, "concurrent_requests": 100}
    limited = parse_scenario({**base, "workload": trace, "router": {"quotas": quotas}})
    assert run_scenario(limited, "least-loaded", 1).row()["n_rejected"] > 300
