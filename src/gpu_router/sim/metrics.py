"""Metrics defined once (DESIGN 4 "Output/Metrics"): column names and the summary table.

Every table the simulator writes uses the constants below, so the sweep, the plots
and the dashboard read the same names. ``summarize`` turns the per-request and
per-GPU arrays of one run into the summary DataFrame: one row per priority
("1".."5") plus "all", with the fleet-level columns repeated on every row.

Definitions (requests submitted in the measurement window ``[warmup_s, horizon_s)``):
- wait = dispatch - submit of the last dispatch (time spent queued, retries included);
  latency = finish - submit; both over completed requests.
- utilization: time-weighted share of GPU-time with at least one request running,
  over the window and the GPUs of the fleet.
- goodput_s: GPU-seconds of exclusive GPU time the completed requests needed on the
  GPU that ran them (their work / that GPU's speed).
- jain_fairness: Jain's index over users of served work / their max-min fair share of
  the work served (water-filling over the users' demands).
- sla_attainment: share of submitted requests that completed with wait <= their
  priority's target (``sla.wait_target_s``).
- overhead_us_*: real CPU time of each policy call (perf_counter_ns), the only
  real clock the simulator reads; it never affects simulated behaviour.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# --- requests table --------------------------------------------------------------
REQUEST_ID = "request_id"
USER_ID = "user_id"
PRIORITY = "priority"
TYPE = "type"
MODEL_ID = "model_id"
SUBMIT_S = "submit_s"
ADMIT_S = "admit_s"
DISPATCH_S = "dispatch_s"
START_S = "start_s"
FINISH_S = "finish_s"
GPU_ID = "gpu_id"
OUTCOME = "outcome"
RETRIES = "retries"
WAIT_S = "wait_s"
LATENCY_S = "latency_s"
SERVICE_S = "service_s"
REROUTED = "rerouted"
ERROR = "error"  # reject code, or the error of a failed/cancelled request
REQUEST_COLUMNS = (
    REQUEST_ID,
    USER_ID,
    PRIORITY,
    TYPE,
    MODEL_ID,
    SUBMIT_S,
    ADMIT_S,
    DISPATCH_S,
    START_S,
    FINISH_S,
    GPU_ID,
    OUTCOME,
    RETRIES,
    WAIT_S,
    LATENCY_S,
    SERVICE_S,
    REROUTED,
    ERROR,
)

# outcomes, index = code stored in the engine's arrays
COMPLETED, FAILED, REJECTED, CANCELLED, LOST = (
    "completed",
    "failed",
    "rejected",
    "cancelled",
    "lost",
)
OUTCOMES = (COMPLETED, FAILED, REJECTED, CANCELLED, LOST)
OUTCOME_CODE = {name: i for i, name in enumerate(OUTCOMES)}

# --- GPU table -----------------------------------------------------------------
MODEL = "model"
BUSY_S = "busy_s"
UTILIZATION = "utilization"
FAILURES = "failures"
COMPLETED_COUNT = "completed"
GPU_COLUMNS = (GPU_ID, MODEL, BUSY_S, UTILIZATION, FAILURES, COMPLETED_COUNT)

# --- summary table -------------------------------------------------------------
N_SUBMITTED = "n_submitted"
N_COMPLETED = "n_completed"
N_REJECTED = "n_rejected"
N_FAILED = "n_failed"
N_CANCELLED = "n_cancelled"
N_LOST = "n_lost"
N_REROUTED = "n_rerouted"
WAIT_MEAN_S = "wait_mean_s"
WAIT_P50_S, WAIT_P95_S, WAIT_P99_S = "wait_p50_s", "wait_p95_s", "wait_p99_s"
P_WAIT = "p_wait"
LATENCY_MEAN_S = "latency_mean_s"
LATENCY_P50_S, LATENCY_P95_S, LATENCY_P99_S = "latency_p50_s", "latency_p95_s", "latency_p99_s"
REROUTE_ADDED_S = "reroute_added_latency_s"
SLA_ATTAINMENT = "sla_attainment"
GOODPUT_S = "goodput_s"
JAIN_FAIRNESS = "jain_fairness"
THROUGHPUT_RPS = "throughput_rps"
OVERHEAD_US_MEAN = "overhead_us_mean"
OVERHEAD_US_P99 = "overhead_us_p99"
HORIZON_S = "horizon_s"
ERLANG_C_WAIT_S = "erlang_c_wait_s"
SUMMARY_COLUMNS = (
    PRIORITY,
    N_SUBMITTED,
    N_COMPLETED,
    N_REJECTED,
    N_FAILED,
    N_CANCELLED,
    N_LOST,
    N_REROUTED,
    WAIT_MEAN_S,
    WAIT_P50_S,
    WAIT_P95_S,
    WAIT_P99_S,
    P_WAIT,
    LATENCY_MEAN_S,
    LATENCY_P50_S,
    LATENCY_P95_S,
    LATENCY_P99_S,
    REROUTE_ADDED_S,
    SLA_ATTAINMENT,
    UTILIZATION,
    GOODPUT_S,
    JAIN_FAIRNESS,
    THROUGHPUT_RPS,
    OVERHEAD_US_MEAN,
    OVERHEAD_US_P99,
    HORIZON_S,
    ERLANG_C_WAIT_S,
)
#: columns that depend on the real CPU clock; everything else is reproducible per seed
NONDETERMINISTIC_COLUMNS = (OVERHEAD_US_MEAN, OVERHEAD_US_P99)

# --- timeline table ------------------------------------------------------------
T = "t"
QUEUE_LENGTH = "queue_length"
RUNNING = "running"
GPUS_UP = "gpus_up"
TIMELINE_COLUMNS = (T, QUEUE_LENGTH, RUNNING, GPUS_UP, REROUTED)


def percentile(values: np.ndarray, q: float) -> float:
    """The q-th percentile (linear interpolation), NaN for an empty sample."""
    return float(np.percentile(values, q)) if len(values) else math.nan


def jain_index(x: np.ndarray) -> float:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all equal, 1/n at worst."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0 or not np.any(x):
        return math.nan
    return float(x.sum() ** 2 / (len(x) * np.square(x).sum()))


def maxmin_share(demand: np.ndarray, total: float) -> np.ndarray:
    """Max-min fair split of ``total`` among users with these demands (water-filling)."""
    demand = np.asarray(demand, dtype=float)
    alloc = np.zeros(len(demand))
    remaining = float(total)
    order = np.argsort(demand, kind="stable")
    for k, idx in enumerate(order):
        alloc[idx] = a = min(demand[idx], remaining / (len(demand) - k))
        remaining -= a
    return alloc


def _jain_over_users(req: pd.DataFrame) -> float:
    """Jain's index over users of served work / their max-min fair share of what was served.

    1.0 when every user got its fair share (all of its demand, or an equal cut of the
    capacity when it asked for more); a heavy user served beyond its share while light
    users went short lowers it. Refusing an abuser's excess does not.
    """
    if req.empty:
        return math.nan
    demand = req.groupby(USER_ID, sort=True, observed=True)["_demand"].sum().to_numpy()
    served = req.groupby(USER_ID, sort=True, observed=True)["_served"].sum().to_numpy()
    fair = maxmin_share(demand, served.sum())
    ok = fair > 0
    if not ok.any():
        return math.nan
    return jain_index(served[ok] / fair[ok])


def _row(req: pd.DataFrame, wait_target: dict[int, float]) -> dict[str, float]:
    outcome = req[OUTCOME].to_numpy()
    done = outcome == COMPLETED
    wait = req[WAIT_S].to_numpy()[done]
    lat = req[LATENCY_S].to_numpy()[done]
    rerouted = req[REROUTED].to_numpy() & done
    not_rerouted = ~req[REROUTED].to_numpy() & done
    added = math.nan
    if rerouted.any() and not_rerouted.any():
        lat_all = req[LATENCY_S].to_numpy()
        added = float(lat_all[rerouted].mean() - lat_all[not_rerouted].mean())
    targets = req[PRIORITY].map(wait_target).to_numpy(dtype=float)
    admitted = outcome != REJECTED
    if np.isnan(targets).all() or len(req) == 0:
        sla = math.nan
    else:
        ok = done & (req[WAIT_S].to_numpy() <= targets)
        sla = float(ok.sum() / len(req))
    return {
        N_SUBMITTED: len(req),
        N_COMPLETED: int(done.sum()),
        N_REJECTED: int((outcome == REJECTED).sum()),
        N_FAILED: int((outcome == FAILED).sum()),
        N_CANCELLED: int((outcome == CANCELLED).sum()),
        N_LOST: int(((outcome == LOST) & admitted).sum()),
        N_REROUTED: int(req[REROUTED].to_numpy().sum()),
        WAIT_MEAN_S: float(wait.mean()) if len(wait) else math.nan,
        WAIT_P50_S: percentile(wait, 50),
        WAIT_P95_S: percentile(wait, 95),
        WAIT_P99_S: percentile(wait, 99),
        P_WAIT: float((wait > 1e-12).mean()) if len(wait) else math.nan,
        LATENCY_MEAN_S: float(lat.mean()) if len(lat) else math.nan,
        LATENCY_P50_S: percentile(lat, 50),
        LATENCY_P95_S: percentile(lat, 95),
        LATENCY_P99_S: percentile(lat, 99),
        REROUTE_ADDED_S: added,
        SLA_ATTAINMENT: sla,
    }


#: what ``_row`` and ``_jain_over_users`` give for no requests (a priority nobody used)
_EMPTY_ROW: dict[str, object] = {
    N_SUBMITTED: 0,
    N_COMPLETED: 0,
    N_REJECTED: 0,
    N_FAILED: 0,
    N_CANCELLED: 0,
    N_LOST: 0,
    N_REROUTED: 0,
    WAIT_MEAN_S: math.nan,
    WAIT_P50_S: math.nan,
    WAIT_P95_S: math.nan,
    WAIT_P99_S: math.nan,
    P_WAIT: math.nan,
    LATENCY_MEAN_S: math.nan,
    LATENCY_P50_S: math.nan,
    LATENCY_P95_S: math.nan,
    LATENCY_P99_S: math.nan,
    REROUTE_ADDED_S: math.nan,
    SLA_ATTAINMENT: math.nan,
    JAIN_FAIRNESS: math.nan,
}


def summarize(
    requests: pd.DataFrame,
    *,
    demand_s: np.ndarray,
    served_s: np.ndarray,
    gpu_seconds: np.ndarray,
    window: tuple[float, float],
    utilization: float,
    overhead_ns: np.ndarray,
    wait_target: dict[int, float],
    erlang_c_wait_s: float,
) -> pd.DataFrame:
    """The summary table of one run (see the module docstring for the definitions).

    ``demand_s``/``served_s`` are per-request work (H100-seconds) demanded and served;
    ``gpu_seconds`` the GPU time of each completed request's successful run (aligned
    with ``requests``); ``window`` the measurement window in simulated seconds.
    """
    start, end = window
    in_window = (requests[SUBMIT_S].to_numpy() >= start) & (requests[SUBMIT_S].to_numpy() < end)
    req = requests.loc[in_window].copy()
    req["_demand"] = demand_s[in_window]
    req["_served"] = served_s[in_window]
    req["_gpu_s"] = gpu_seconds[in_window]
    span = max(end - start, 1e-12)
    done = req[OUTCOME].to_numpy() == COMPLETED
    fleet = {
        UTILIZATION: utilization,
        GOODPUT_S: float(req["_gpu_s"].to_numpy()[done].sum()),
        THROUGHPUT_RPS: float(done.sum() / span),
        OVERHEAD_US_MEAN: float(overhead_ns.mean() / 1e3) if len(overhead_ns) else math.nan,
        OVERHEAD_US_P99: percentile(overhead_ns, 99) / 1e3,
        HORIZON_S: float(end),
        ERLANG_C_WAIT_S: erlang_c_wait_s,
    }
    rows = []
    for label in ("1", "2", "3", "4", "5", "all"):
        part = req if label == "all" else req.loc[req[PRIORITY].to_numpy() == int(label)]
        row: dict[str, object] = {PRIORITY: label}
        if len(part):
            row.update(_row(part, wait_target))
            row[JAIN_FAIRNESS] = _jain_over_users(part)
        else:  # the same values, without the pandas work
            row.update(_EMPTY_ROW)
        row.update(fleet)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
