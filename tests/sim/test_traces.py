from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpu_router.resources import data_dir
from gpu_router.sim import load_scenario, parse_scenario, run_scenario
from gpu_router.sim.service_model import ServiceModel
from gpu_router.sim.trace_spec import BUILTIN
from gpu_router.sim.traces import read_trace

AZURE_FILE, ALIBABA_PODS_FILE = BUILTIN["azure_llm"][0], BUILTIN["alibaba_pods"][0]


def azure_llm(rng, spec, service, horizon_s):
    return read_trace(rng, spec, service, 1.0, horizon_s)


def alibaba_pods(rng, spec, mean_speed, horizon_s):
    return read_trace(rng, spec, ServiceModel(), mean_speed, horizon_s)


def spec(kind, **trace):
    return parse_scenario({"workload": {"load": None, "trace": {"kind": kind, **trace}}}).workload


def test_azure_replay_times_and_work():
    sm = ServiceModel()
    full = azure_llm(np.random.default_rng(0), spec("azure_llm"), sm, 4000.0)
    assert len(full) == 19_366 and full.arrival_s[0] == 0.0
    fast = azure_llm(np.random.default_rng(0), spec("azure_llm", time_scale=2.0), sm, 4000.0)
    assert np.allclose(fast.arrival_s, full.arrival_s / 2)
    df = pd.read_csv(data_dir() / AZURE_FILE)
    first = sm.llm_work(df.ContextTokens.to_numpy()[:1], df.GeneratedTokens.to_numpy()[:1])
    assert full.work[0] == pytest.approx(first[0])  # rows keep their order (times sorted)
    short = azure_llm(np.random.default_rng(0), spec("azure_llm", limit=100), sm, 4000.0)
    assert len(short) == 100
    window = azure_llm(np.random.default_rng(0), spec("azure_llm", start_s=600), sm, 60.0)
    assert 0 < len(window) < 1000 and window.arrival_s.max() < 60


def test_alibaba_pods_mapping():
    wl = alibaba_pods(np.random.default_rng(0), spec("alibaba_pods"), 1.0, 2e7)
    pods = pd.read_csv(data_dir() / ALIBABA_PODS_FILE)
    ok = pods.scheduled_time.notna() & (pods.num_gpu >= 1)
    ok &= (pods.deletion_time - pods.scheduled_time) > 0
    assert len(wl) == int(pods.num_gpu[ok].sum())  # a pod of n GPUs is n requests
    assert set(np.unique(wl.priority)) <= {1, 2, 4, 5}
    assert wl.memory_mb.max() == 15_000.0 and wl.memory_mb.min() > 0
    assert np.all(np.diff(wl.arrival_s) >= 0)


def test_replay_scenarios_run_small():
    path = Path(__file__).parents[2] / "scenarios" / "azure_llm_replay.yaml"
    sc = load_scenario(path, {"horizon_s": 120, "warmup_s": 10})
    res = run_scenario(sc, "earliest-completion", 1)
    assert len(res.requests) > 300 and res.row()["n_lost"] == 0
