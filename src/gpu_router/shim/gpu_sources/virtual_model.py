"""What a virtual GPU is: its hardware spec and the service model its jobs run under.

The model is :class:`CalibratedModel` (the simulator's calibration constants, without
importing SimPy) unless a ``sim.service_model.ServiceModel`` or another model is passed
(:func:`adapt_model`): total throughput of k co-located jobs (+13% at k=2, +16% at k=4,
as ``fixtures/h100_service_times.json`` measured), the CUDA context per job (MB) and the
launch-bound floor (s, 3.36 ms on the reference GPU) below which no job runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from gpu_router.policy import InvalidValue

#: total throughput of k co-located jobs relative to one (304 -> 344 -> 353 it/s); the
#: same numbers as ``sim.service_model.Calibration`` (a test keeps the two equal)
_SHARING = ((1, 1.0), (2, 1.13287), (4, 1.16250))


class CalibratedModel:
    """Service model from the H100 measurements: sharing gain, per-job CUDA context (MB)
    and the launch-bound floor (s) below which no job runs."""

    context_mb = 794.96  # NVML used minus allocated, per co-located process
    floor_s = 0.0033565  # median forward pass of the small transformer runs

    def throughput(self, k: int) -> float:
        if k <= 1:
            return 1.0
        for (k0, v0), (k1, v1) in itertools.pairwise(_SHARING):
            if k <= k1:
                return v0 + (v1 - v0) * (k - k0) / (k1 - k0)
        return _SHARING[-1][1]


class _SimModel:
    """``sim.service_model.ServiceModel`` seen through the interface above."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.context_mb = float(model.cal.context_overhead_mb)
        self.floor_s = float(model.cal.floor_s)

    def throughput(self, k: int) -> float:
        return 1.0 if k <= 1 else float(self._model.gain(k))


def adapt_model(model: Any) -> Any:
    """A model offering ``throughput(k)``, ``context_mb`` and ``floor_s``: ours as it is,
    the simulator's ``ServiceModel`` (``gain``, ``cal``) through an adapter. ``None``:
    ``CalibratedModel``, which keeps ``gpu-router serve`` from importing SimPy."""
    if model is None:
        return CalibratedModel()
    if callable(getattr(model, "throughput", None)) and hasattr(model, "context_mb"):
        return model
    if callable(getattr(model, "gain", None)) and hasattr(model, "cal"):
        return _SimModel(model)
    raise InvalidValue("model", model, "needs throughput(k) and context_mb, or gain(n) and cal")


@dataclass(frozen=True, slots=True)
class VirtualGpuSpec:
    """One virtual GPU model; defaults are the captured H100 80GB HBM3."""

    name: str = "NVIDIA H100 80GB HBM3"
    memory_total_mb: float = 81_559.0
    base_memory_mb: float = 480.0
    compute_capability: tuple[int, int] = (9, 0)
    speed: float = 1.0
    slots: int = 1
    idle_power_w: float = 72.0
    power_limit_w: float = 700.0
    idle_temp_c: float = 37.0
    load_temp_c: float = 58.0
