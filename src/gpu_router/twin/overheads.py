"""Where the service's time goes beyond the work, from its own records.

Inputs: the replay's records (client send and answer; the service's ``submitted_time``,
``start_time``, ``completion_time``) and the workers' job logs (wall time each job
started and ended), all wall seconds from the replay's start. Per completed request:

- ``admission``: service ``submitted_time`` - when the client sent it (HTTP, parsing,
  the event loop's delay in getting to it); ``answer``: the client's round trip;
- ``send_lag``: when the client sent it - when the trace said (the client's own loop);
- ``dispatch``: worker job start - the moment the router could dispatch it: its
  submission, or, for a request that queued, the previous request's completion on that
  GPU (the job POST, and the worker's loop);
- ``start_report``: service ``start_time`` - worker job start (the POST's answer leg);
- ``run_excess``: worker job end - start - work (the sleep's own accuracy);
- ``detect``: service ``completion_time`` - worker job end (polling: the first poll
  after the end, the status GET, applying the completion);
- ``occupancy``: what the router holds the GPU for beyond the work,
  completion - worker start - work + dispatch.

:func:`fit` regresses occupancy on the work by least squares (``a + b * work``): ``a``
is ``dispatch_overhead_s`` and ``b`` ``dispatch_overhead_share`` of the simulator
(scenario ``service_model``), the calibration docs/simulator.md records.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..sim.service_model import poll_delay_s

PARTS = ("send_lag", "admission", "answer", "dispatch", "start_report", "run_excess", "detect")


def job_times(jobs: list[dict[str, Any]], t0: float) -> pd.DataFrame:
    """First start and last end of each request's jobs (wall s from ``t0``)."""
    if not jobs:
        return pd.DataFrame(columns=["request_id", "job_start_s", "job_end_s", "job_gpu"])
    df = pd.DataFrame(jobs)
    # a worker sees the router's key of a request, ``<request_id>/<user_id>`` (request ids
    # are per user, and hold no "/"); the replay knows the request_id
    df["request_id"] = df["request_id"].astype(str).str.split("/", n=1).str[0]
    starts = (
        df[df["event"] == "start"]
        .groupby("request_id")
        .agg(job_start_s=("t", "max"), job_gpu=("gpu", "last"))
    )
    ends = df[df["event"] == "end"].groupby("request_id").agg(job_end_s=("t", "max"))
    out = starts.join(ends, how="outer").reset_index()
    out["job_start_s"] -= t0
    out["job_end_s"] -= t0
    return out


def decompose(records: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """One row per completed request with each part (s) of ``PARTS`` and ``occupancy``."""
    d = records[records["outcome"] == "completed"].merge(jobs, on="request_id", how="left")
    d = d.sort_values("job_start_s").reset_index(drop=True)
    d["send_lag"] = d["sent_s"] - d["arrival_s"]
    d["admission"] = d["submit_s"] - d["sent_s"]
    d["answer"] = d["answered_s"] - d["sent_s"]
    d["start_report"] = d["start_s"] - d["job_start_s"]
    d["run_excess"] = d["job_end_s"] - d["job_start_s"] - d["work_s"]
    d["detect"] = d["finish_s"] - d["job_end_s"]
    ready = d["submit_s"].to_numpy(copy=True)
    prev_finish: dict[Any, float] = {}
    for i, (gpu, submit, finish) in enumerate(
        zip(d["job_gpu"], d["submit_s"], d["finish_s"], strict=True)
    ):
        before = prev_finish.get(gpu, -math.inf)
        ready[i] = max(submit, before)
        prev_finish[gpu] = finish
    d["dispatch"] = d["job_start_s"] - ready
    d["queued"] = ready > d["submit_s"].to_numpy()
    d["occupancy"] = d["finish_s"] - d["job_start_s"] - d["work_s"] + d["dispatch"]
    return d


def fit(parts: pd.DataFrame) -> dict[str, float]:
    """``occupancy ~ a + b * work`` by least squares: ``{dispatch_overhead_s: a,
    dispatch_overhead_share: b}`` (b clipped at 0; a refit with b = 0 then)."""
    ok = parts[np.isfinite(parts["occupancy"]) & np.isfinite(parts["work_s"])]
    if len(ok) < 3:
        return {"dispatch_overhead_s": math.nan, "dispatch_overhead_share": math.nan}
    b, a = np.polyfit(ok["work_s"], ok["occupancy"], 1)
    if b < 0:
        b, a = 0.0, float(ok["occupancy"].mean())
    return {"dispatch_overhead_s": float(max(a, 0.0)), "dispatch_overhead_share": float(b)}


def fit_polled(parts: pd.DataFrame, poll_s: float, max_poll_s: float) -> dict[str, float]:
    """The calibration with completion polling modelled (``poll_s``, ``max_poll_s``: the
    service's ``dispatch.poll_interval`` and ``max_poll_interval``): ``dispatch_overhead_s``
    is the mean occupancy left once each request's polling delay is taken out."""
    ok = parts[np.isfinite(parts["occupancy"]) & np.isfinite(parts["work_s"])]
    poll = np.array([poll_delay_s(w, poll_s, max_poll_s) for w in ok["work_s"]])
    rest = ok["occupancy"].to_numpy() - poll
    return {
        "dispatch_overhead_s": float(max(rest.mean(), 0.0)) if len(rest) else math.nan,
        "dispatch_overhead_share": 0.0,
        "poll_interval_s": poll_s,
        "max_poll_interval_s": max_poll_s,
    }


def summary(parts: pd.DataFrame) -> dict[str, Any]:
    """p50/p99 (ms) of each part; the dispatch of queued requests apart; the fit."""
    out: dict[str, Any] = {}
    cols = {**{p: parts[p] for p in PARTS}, "occupancy": parts["occupancy"]}
    cols["dispatch_queued"] = parts.loc[parts["queued"], "dispatch"]
    for name, col in cols.items():
        x = col.dropna().to_numpy()
        out[name] = {
            "n": len(x),
            "p50_ms": round(float(np.percentile(x, 50)) * 1e3, 2) if len(x) else None,
            "p99_ms": round(float(np.percentile(x, 99)) * 1e3, 2) if len(x) else None,
            "mean_ms": round(float(x.mean()) * 1e3, 2) if len(x) else None,
        }
    out["fit"] = fit(parts)
    return out
