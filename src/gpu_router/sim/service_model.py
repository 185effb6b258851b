"""Service-time model calibrated from ``fixtures/h100_service_times.json`` (one H100).

Work is measured in *H100-seconds*: the time the request would take alone on an
idle H100. On a GPU of relative ``speed`` with ``n`` co-located requests and a
throttle factor ``f``, each request progresses at

    rate(n) = speed * f * gain(n) / n          (H100-seconds per second)

where ``gain`` is the measured total-throughput gain of time-sharing
(k = 1, 2, 4 processes: 304 -> 344 -> 353 it/s, i.e. 1.00, 1.13, 1.16;
interpolated linearly, flat beyond the last point). Exclusive mode is n <= 1.

Other calibrated constants (docs/simulator.md lists the numbers):
- ``floor_s``: launch-bound floor of a forward pass (3.36 ms: median of the
  transformer runs with <= 4096 tokens); no request takes less on an H100.
- ``ms_per_token``/``intercept_ms``: least-squares line through the transformer runs
  with >= 8192 tokens (0.843 us/token for the d=1024, 12-layer model).
- ``context_overhead_mb``: GPU memory each co-located process adds beyond its
  tensors (slope of NVML used minus allocated over k: 795 MB).
- ``h2d_gb_s``: host-to-device bandwidth (51.1 GB/s), for model loads.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .scenario import ServiceModelSpec

FIXTURE = "fixtures/h100_service_times.json"
#: parameters of a 12-layer d=1024 transformer (12 * 12 * d^2), the fixture's model
FIXTURE_MODEL_PARAMS = 12 * 12 * 1024**2
#: LLM defaults: a 7B-parameter model; decode is memory-bound: 14 GB of FP16 weights
#: read per token at 3.35 TB/s is 4.2 ms, rounded up to 5 ms for kernel overheads.
LLM_PARAMS = 7e9
DECODE_MS_PER_TOKEN = 5.0


@dataclass(frozen=True, slots=True)
class Calibration:
    floor_ms: float = 3.3565
    ms_per_token: float = 0.000843172872
    intercept_ms: float = -1.32465749
    sharing_gain: tuple[tuple[int, float], ...] = ((1, 1.0), (2, 1.13287), (4, 1.16250))
    context_overhead_mb: float = 794.96
    h2d_gb_s: float = 51.1

    @property
    def floor_s(self) -> float:
        return self.floor_ms / 1e3


def fit_calibration(path: str | Path) -> Calibration:
    """Recompute the constants from the fixture file (the frozen defaults come from it)."""
    data = json.loads(Path(path).read_text())
    runs = data["transformer_fwd_d1024_l12_fp16"]
    tokens = np.array([r["batch"] * r["seq"] for r in runs], dtype=float)
    ms = np.array([r["p50_ms"] for r in runs], dtype=float)
    floor = float(np.median(ms[tokens <= 4096]))
    big = tokens >= 8192
    slope, intercept = np.polyfit(tokens[big], ms[big], 1)
    share = data["sharing_bs8_seq512"]
    base = share[0]["total_it_s"]
    gain = tuple((int(r["processes"]), float(r["total_it_s"] / base)) for r in share)
    k = np.array([r["processes"] for r in share], dtype=float)
    ctx = np.array([r["nvml_used_peak_mb"] - sum(r["torch_peak_alloc_mb"]) for r in share])
    overhead = float(np.polyfit(k, ctx, 1)[0])
    return Calibration(
        floor_ms=floor,
        ms_per_token=float(slope),
        intercept_ms=float(intercept),
        sharing_gain=gain,
        context_overhead_mb=overhead,
        h2d_gb_s=float(data["h2d_2GiB_pinned"]["gb_per_s"]),
    )


class ServiceModel:
    """Rates and times of the calibrated model, with a scenario's overrides applied."""

    def __init__(self, spec: ServiceModelSpec | None = None, cal: Calibration | None = None):
        spec = spec or ServiceModelSpec()
        cal = cal or Calibration()
        if spec.sharing_gain is not None:
            cal = replace(cal, sharing_gain=tuple(sorted(spec.sharing_gain.items())))
        if spec.context_overhead_mb is not None:
            cal = replace(cal, context_overhead_mb=spec.context_overhead_mb)
        if spec.floor_ms is not None:
            cal = replace(cal, floor_ms=spec.floor_ms)
        self.cal = cal
        self.startup_s = spec.startup_s
        scale = LLM_PARAMS / FIXTURE_MODEL_PARAMS
        self.prefill_us_per_token = spec.prefill_us_per_token or cal.ms_per_token * 1e3 * scale
        self.decode_ms_per_token = spec.decode_ms_per_token or DECODE_MS_PER_TOKEN
        ks = [k for k, _ in cal.sharing_gain]
        if ks[0] != 1 or any(b <= a for a, b in itertools.pairwise(ks)):
            raise ValueError(f"service_model.sharing_gain={dict(cal.sharing_gain)!r}: keys 1,2,..")
        self._gain_k = np.array(ks, dtype=float)
        self._gain_v = np.array([v for _, v in cal.sharing_gain], dtype=float)
        self._gain_cache = [0.0] + [self._gain(n) for n in range(1, 65)]

    def _gain(self, n: int) -> float:
        return float(np.interp(n, self._gain_k, self._gain_v))

    def gain(self, n: int) -> float:
        """Total throughput of n co-located requests relative to one alone."""
        return self._gain_cache[n] if n < len(self._gain_cache) else self._gain(n)

    def rate(self, speed: float, n: int, factor: float = 1.0) -> float:
        """H100-seconds of work each of ``n`` co-located requests gets per second."""
        if n <= 1:
            return speed * factor
        return speed * factor * self.gain(n) / n

    def apply_floor(self, work: np.ndarray) -> np.ndarray:
        """Work of a batch of requests with the launch-bound floor applied."""
        floor = self.cal.floor_s
        return np.maximum(work, floor) if floor > 0 else work

    def llm_work(self, prompt_tokens: np.ndarray, generated_tokens: np.ndarray) -> np.ndarray:
        """H100-seconds of an LLM request: prefill (floored) plus memory-bound decode."""
        prefill_ms = np.maximum(
            self.cal.floor_ms, np.asarray(prompt_tokens, float) * self.prefill_us_per_token / 1e3
        )
        decode_ms = np.asarray(generated_tokens, float) * self.decode_ms_per_token
        return (prefill_ms + decode_ms) / 1e3

    def memory_mb(self, declared_mb: float) -> float:
        """GPU memory one running request occupies: its tensors plus a CUDA context."""
        return declared_mb + self.cal.context_overhead_mb

    def load_time_s(self, model_bytes: float) -> float:
        """Seconds to copy a model of ``model_bytes`` to the GPU at the measured H2D rate."""
        return model_bytes / (self.cal.h2d_gb_s * 1e9)


def mean_with_floor(mean: float, floor: float) -> float:
    """E[max(S, floor)] for exponential S of ``mean`` (used to set the arrival rate)."""
    if floor <= 0:
        return mean
    return floor + mean * math.exp(-floor / mean)


def poll_delay_s(run_s: float, first_s: float, max_s: float) -> float:
    """Wall s from a job's end (``run_s`` after its start) to the first poll at or after
    it: the service polls a job first ``first_s`` after its start, then every 10% of the
    time it has run, at least ``first_s`` and at most ``max_s`` apart
    (shim/core/polled_jobs.py). 0 when ``first_s`` is 0 (no polling modelled)."""
    if first_s <= 0:
        return 0.0
    t = first_s
    while t < run_s:
        t += min(max_s, max(first_s, 0.1 * t))
    return t - run_s


def dispatch_extra(sm: ServiceModelSpec, work: float, speed: float) -> float:
    """Work units (H100-s) the service adds to one run of ``work`` on a GPU of ``speed``:
    ``dispatch_overhead_s`` and the polling delay (wall s, taking the run to last
    ``work / speed``, as on an exclusive GPU) and ``dispatch_overhead_share`` of the work.
    0.0 when the scenario models none of them."""
    if not (sm.dispatch_overhead_s or sm.dispatch_overhead_share or sm.poll_interval_s):
        return 0.0
    poll = poll_delay_s(work / speed, sm.poll_interval_s, sm.max_poll_interval_s)
    return (sm.dispatch_overhead_s + poll) * speed + sm.dispatch_overhead_share * work
