"""Synthetic workloads: arrival processes and the request mix, drawn up front as arrays.

A ``Workload`` holds one row per request (arrival time, user, priority, type,
model, work in H100-seconds, declared duration and memory), so the engine never
draws a random number per event and 1,000,000 requests cost a few numpy calls.

Arrival rate: ``workload.rate_rps`` if set, else ``load * capacity / E[work]``
where capacity is the fleet's summed speed (H100-seconds per second) and
E[work] = service.mean_s * E[type work_scale] * E[model work_scale]. With one
GPU model, exclusive mode and no floor this makes ``load`` the M/M/c rho exactly.

Processes: ``poisson``; ``mmpp`` (two-state Markov-modulated Poisson: a burst
state with ``burst_factor`` times the base rate for ``burst_fraction`` of the
time, bursts lasting ``burst_mean_s`` on average; the mean rate stays the
target); ``diurnal`` (rate * (1 + amplitude * sin(2 pi t / period_s + phase)),
drawn by thinning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scenario import ScenarioError, ServiceSpec, WorkloadSpec

#: the most requests one run may draw (about 1 GB of arrays and records)
MAX_REQUESTS = 10_000_000


@dataclass(frozen=True)
class Workload:
    """Requests as aligned arrays; names index the int columns."""

    arrival_s: np.ndarray
    user: np.ndarray
    priority: np.ndarray
    type_idx: np.ndarray
    model_idx: np.ndarray
    work: np.ndarray  # H100-seconds
    declared_ms: np.ndarray
    memory_mb: np.ndarray
    user_names: tuple[str, ...]
    type_names: tuple[str, ...]
    model_ids: tuple[str, ...]
    model_min_cc: tuple[tuple[int, int] | None, ...]
    model_weights_mb: tuple[float, ...]
    rate_rps: float
    mean_work: float
    timeout_s: float | None = None
    cancel_at: np.ndarray | None = None  # absolute time a client cancels (NaN: never)
    adapters: np.ndarray | None = None  # adapters (LoRA) each request loads first

    def __len__(self) -> int:
        return len(self.arrival_s)


def poisson_times(rng: np.random.Generator, rate: float, start: float, end: float) -> np.ndarray:
    """Arrival times of a Poisson process of ``rate`` on [start, end)."""
    if rate <= 0 or end <= start:
        return np.empty(0)
    n = rng.poisson(rate * (end - start))
    return start + np.sort(rng.random(n)) * (end - start)


def mmpp_times(
    rng: np.random.Generator,
    rate: float,
    horizon: float,
    factor: float,
    frac: float,
    burst_s: float,
) -> np.ndarray:
    base = rate / (1.0 - frac + frac * factor)
    calm_s = burst_s * (1.0 - frac) / frac
    t, burst, parts = 0.0, rng.random() < frac, []
    while t < horizon:
        length = rng.exponential(burst_s if burst else calm_s)
        end = min(horizon, t + length)
        parts.append(poisson_times(rng, base * (factor if burst else 1.0), t, end))
        t, burst = end, not burst
    return np.concatenate(parts) if parts else np.empty(0)


def diurnal_times(
    rng: np.random.Generator, rate: float, horizon: float, amp: float, period: float, phase: float
) -> np.ndarray:
    peak = rate * (1.0 + amp)
    cand = poisson_times(rng, peak, 0.0, horizon)
    lam = rate * (1.0 + amp * np.sin(2 * math.pi * cand / period + phase))
    return cand[rng.random(len(cand)) * peak < lam]


def service_sample(rng: np.random.Generator, spec: ServiceSpec, n: int) -> np.ndarray:
    """n draws of work (H100-seconds) with the spec's mean and coefficient of variation."""
    m, cv = spec.mean_s, spec.cv
    if spec.distribution == "exponential":
        return rng.exponential(m, n)
    if spec.distribution == "deterministic" or cv == 0:
        return np.full(n, m)
    if spec.distribution == "lognormal":
        s2 = math.log1p(cv * cv)
        return rng.lognormal(math.log(m) - s2 / 2, math.sqrt(s2), n)
    k = 1.0 / (cv * cv)
    return rng.gamma(k, m / k, n)


def user_weights(count: int, skew: float, heavy_share: float) -> np.ndarray:
    """Probability of each user: Zipf(skew) over users, user 0 taking ``heavy_share`` first."""
    w = 1.0 / np.arange(1, count + 1, dtype=float) ** skew
    if heavy_share > 0 and count > 1:
        rest = w[1:] / w[1:].sum() * (1.0 - heavy_share)
        return np.concatenate([[heavy_share], rest])
    return np.asarray(w / w.sum(), dtype=float)


def _choice(rng: np.random.Generator, weights: list[float], n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    p = p / p.sum()
    if len(p) == 1:
        return np.zeros(n, dtype=np.int32)
    return rng.choice(len(p), size=n, p=p).astype(np.int32)


def mean_work(spec: WorkloadSpec) -> float:
    """E[work] in H100-seconds of the synthetic mix (floor not included)."""
    tw = np.array([t.weight for t in spec.types.values()])
    ts = np.array([t.work_scale for t in spec.types.values()])
    mw = np.array([m.weight for m in spec.models])
    ms = np.array([m.work_scale for m in spec.models])
    return spec.service.mean_s * float(tw @ ts / tw.sum()) * float(mw @ ms / mw.sum())


def arrival_rate(spec: WorkloadSpec, capacity: float) -> float:
    if spec.rate_rps is not None:
        return spec.rate_rps
    if spec.load is None:
        raise ScenarioError("workload: set load or rate_rps")
    return spec.load * capacity / mean_work(spec)


def check_size(spec: WorkloadSpec, rate: float, horizon_s: float) -> None:
    """Refuse a run that would draw more than ``MAX_REQUESTS``, naming the key that sets it."""
    peak = rate * (1.0 + spec.arrival.amplitude) if spec.arrival.process == "diurnal" else rate
    expected = peak * horizon_s
    if expected > MAX_REQUESTS:
        key, value = (
            ("workload.rate_rps", spec.rate_rps)
            if spec.rate_rps is not None
            else ("workload.load", spec.load)
        )
        raise ScenarioError(
            f"{key}={value!r}: about {expected:.3g} requests over horizon_s={horizon_s:g}"
            f" ({rate:.3g}/s); at most {MAX_REQUESTS:,} per run (lower {key} or horizon_s)"
        )


def mix(
    rng: np.random.Generator,
    spec: WorkloadSpec,
    arrival: np.ndarray,
    work: np.ndarray | None,
    rate: float,
) -> Workload:
    """Attach users, priorities, types and models to given arrival times (and base work)."""
    n = len(arrival)
    prios = sorted(spec.priorities)
    pidx = _choice(rng, [spec.priorities[p] for p in prios], n)
    types = list(spec.types)
    tidx = _choice(rng, [spec.types[t].weight for t in types], n)
    midx = _choice(rng, [m.weight for m in spec.models], n)
    uw = user_weights(spec.users.count, spec.users.skew, spec.users.heavy_share)
    uidx = rng.choice(len(uw), size=n, p=uw).astype(np.int32) if len(uw) > 1 else np.zeros(n, int)
    tscale = np.array([spec.types[t].work_scale for t in types])[tidx]
    mscale = np.array([m.work_scale for m in spec.models])[midx]
    if work is None:
        work = service_sample(rng, spec.service, n) * tscale * mscale
        declared = spec.service.mean_s * tscale * mscale * 1e3
    else:
        work = np.asarray(work, dtype=float) * tscale * mscale
        declared = work * 1e3
    arrival = np.asarray(arrival, dtype=float)
    cancel_at = None
    if spec.cancel.share > 0:
        who = rng.random(n) < spec.cancel.share
        patience = rng.exponential(spec.cancel.patience_s, n)
        cancel_at = np.where(who, arrival + patience, np.nan)
    return Workload(
        arrival_s=arrival,
        user=uidx,
        priority=np.array(prios, dtype=np.int8)[pidx],
        type_idx=tidx,
        model_idx=midx,
        work=work,
        declared_ms=declared,
        memory_mb=np.array([m.memory_mb for m in spec.models])[midx],
        user_names=tuple(f"u{i:02d}" for i in range(len(uw))),
        type_names=tuple(types),
        model_ids=tuple(m.id for m in spec.models),
        model_min_cc=tuple(m.min_compute_capability for m in spec.models),
        model_weights_mb=tuple(m.weights_mb for m in spec.models),
        rate_rps=rate,
        mean_work=mean_work(spec),
        timeout_s=spec.timeout_s,
        cancel_at=cancel_at,
    )


def generate(
    rng: np.random.Generator, spec: WorkloadSpec, capacity: float, horizon_s: float
) -> Workload:
    """The synthetic workload of a scenario over [0, horizon_s)."""
    rate = arrival_rate(spec, capacity)
    check_size(spec, rate, horizon_s)
    a = spec.arrival
    if a.process == "poisson":
        times = poisson_times(rng, rate, 0.0, horizon_s)
    elif a.process == "mmpp":
        times = mmpp_times(rng, rate, horizon_s, a.burst_factor, a.burst_fraction, a.burst_mean_s)
    else:
        times = diurnal_times(rng, rate, horizon_s, a.amplitude, a.period_s, a.phase)
    return mix(rng, spec, times, None, rate)
