"""Trace replay: the Azure LLM conversation trace and the Alibaba GPU-v2023 pods.

Attribution (keep it where results are cited):
- ``azure_llm_2023_conv.csv``: Azure Public Dataset, AzureLLMInferenceTrace_conv
  (Patel et al., "Splitwise: Efficient generative LLM inference using phase
  splitting", ISCA 2024), CC-BY-4.0.
- ``alibaba_gpu_v2023_pods.csv``: Alibaba cluster-trace-gpu-v2023 (Weng et al.,
  "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
  Gradient Descent", USENIX ATC 2023).

Time scaling: an event at trace time t (seconds from the trace start) arrives at
``(t - start_s) / time_scale``; ``time_scale`` > 1 compresses arrivals and raises
the load. ``duration_scale`` multiplies service work.

Azure: work from tokens through the calibrated LLM model (service_model.llm_work).
Alibaba: pods that were scheduled and ask for >= 1 GPU; a pod of ``num_gpu`` GPUs
becomes that many single-GPU requests (the router places single GPUs; gang
scheduling is out of scope); duration = deletion - scheduled time, taken as seconds
on a GPU of the fleet's mean speed; ``gpu_milli`` sets declared memory as that
share of 15,000 MB (so fractional pods can share GPUs in shared mode);
QoS maps to priority: Guaranteed 5, LS 4, Burstable 2, BE 1.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..resources import data_dir
from .scenario import ScenarioError, TraceSpec, WorkloadSpec
from .service_model import ServiceModel
from .workload import Workload, mix

AZURE_FILE = "traces/azure_llm_2023_conv.csv"
ALIBABA_PODS_FILE = "traces/alibaba_gpu_v2023_pods.csv"
QOS_PRIORITY = {"Guaranteed": 5, "LS": 4, "Burstable": 2, "BE": 1}
POD_MEMORY_MB = 15_000.0


def _read(path: Path, **kw: object) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except (OSError, ValueError) as err:
        raise ScenarioError(f"workload.trace.path={str(path)!r}: cannot read: {err}") from None


def _window(t: np.ndarray, tr: TraceSpec, horizon_s: float) -> np.ndarray:
    """Indices of trace events that arrive in [0, horizon), capped at ``limit``."""
    arrival = (t - tr.start_s) / tr.time_scale
    keep = np.flatnonzero((arrival >= 0) & (arrival < horizon_s))
    keep = keep[np.argsort(arrival[keep], kind="stable")]
    return keep[: tr.limit] if tr.limit else keep


def azure_llm(
    rng: np.random.Generator, spec: WorkloadSpec, service: ServiceModel, horizon_s: float
) -> Workload:
    tr = spec.trace
    assert tr is not None  # noqa: S101 - caller checks
    path = Path(tr.path) if tr.path else data_dir() / AZURE_FILE
    df = _read(path)
    stamps = pd.to_datetime(df["TIMESTAMP"], format="mixed")
    t = (stamps - stamps.min()).dt.total_seconds().to_numpy()
    keep = _window(t, tr, horizon_s)
    arrival = (t[keep] - tr.start_s) / tr.time_scale
    work = (
        service.llm_work(
            df["ContextTokens"].to_numpy()[keep], df["GeneratedTokens"].to_numpy()[keep]
        )
        * tr.duration_scale
    )
    rate = len(keep) / horizon_s
    return mix(rng, spec, arrival, work, rate)


def alibaba_pods(
    rng: np.random.Generator, spec: WorkloadSpec, ref_speed: float, horizon_s: float
) -> Workload:
    tr = spec.trace
    assert tr is not None  # noqa: S101 - caller checks
    path = Path(tr.path) if tr.path else data_dir() / ALIBABA_PODS_FILE
    df = _read(path)
    df = df[df["scheduled_time"].notna() & (df["num_gpu"] >= 1)]
    dur = (df["deletion_time"] - df["scheduled_time"]).to_numpy(dtype=float)
    df = df[dur > 0]
    dur = dur[dur > 0]
    reps = df["num_gpu"].to_numpy(dtype=int)
    t = np.repeat(df["creation_time"].to_numpy(dtype=float), reps)
    dur = np.repeat(dur, reps)
    milli = np.repeat(df["gpu_milli"].to_numpy(dtype=float), reps)
    prio = np.repeat(df["qos"].map(QOS_PRIORITY).fillna(3).to_numpy(dtype=np.int8), reps)
    keep = _window(t, tr, horizon_s)
    arrival = (t[keep] - tr.start_s) / tr.time_scale
    work = dur[keep] * tr.duration_scale * ref_speed
    wl = mix(rng, spec, arrival, work, len(keep) / horizon_s)
    memory = np.clip(milli[keep], 1, 1000) / 1000.0 * POD_MEMORY_MB
    return replace(wl, priority=prio[keep], memory_mb=memory)
