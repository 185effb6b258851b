"""Model load costs in the simulator: an empirical distribution of measured load times.

With model locality on (the scenario's ``router.models`` block), a ``Dispatch`` marked
``cold`` makes the simulated worker load the model first: it takes a load time drawn
from ``service_model.model_load`` (the measured latencies of a file, each equally
likely, drawn with the run's own generator), or the router's estimate
(``Dispatch.load_s``) when the scenario names no file. The worker reports the load
to the router (``model_loaded``) when it ends; a request placed on a GPU where its
model is still loading waits for the rest of that load. Adapters (LoRA,
``service_model.adapter_load``): ``AdapterLoads``. Times in seconds.

Calibration (``docs/simulator.md``): Alibaba GenAI 2026, base-model loads
(``traces/alibaba_genai_2026_basemodel_load_ms.csv``, 7,531 events): mean 22.0 s,
p10 2.6 s, p50 22.7 s, p90 42.0 s, p99 51.9 s; LoRA adapters
(``alibaba_genai_2026_lora_load_ms.csv``, 27,415 events): p50 4.4 s, p99 8.2 s.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..resources import data_dir
from .scenario import ModelLoadSpec, ScenarioError


class LoadTimes:
    """Measured load times (s), sampled uniformly with a passed-in generator."""

    def __init__(self, seconds: np.ndarray, source: str = "") -> None:
        values = np.asarray(seconds, dtype=float)
        values = values[np.isfinite(values) & (values >= 0)]
        if not len(values):
            raise ScenarioError(f"service_model.model_load: no valid load time in {source!r}")
        self.values = np.sort(values)
        self.source = source

    @classmethod
    def from_spec(cls, spec: ModelLoadSpec) -> LoadTimes:
        path = Path(spec.path)
        if not path.is_absolute() and not path.exists():
            path = data_dir() / spec.path
        try:
            frame = pd.read_csv(path, usecols=[spec.column])
        except (OSError, ValueError) as err:
            raise ScenarioError(f"service_model.model_load.path={spec.path!r}: {err}") from None
        return cls(frame[spec.column].to_numpy(dtype=float) * spec.unit_s, str(path))

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.values[rng.integers(len(self.values))])

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.values, q))

    @property
    def mean_s(self) -> float:
        return float(self.values.mean()) if len(self.values) else math.nan


class AdapterLoads:
    """Adapter (LoRA) loads: request i loads ``counts[i]`` adapters one after another
    before it runs (after its base model when that is cold), each an independent draw
    from ``times`` with ``rng``. Never cached: a trace that counts adapters without
    naming them cannot tell two requests' adapters apart, so every dispatch pays
    (a re-dispatch again). ``loads`` and ``load_s_total`` tally what was charged."""

    def __init__(self, times: LoadTimes, counts: np.ndarray, rng: np.random.Generator) -> None:
        self.times = times
        self.counts = np.asarray(counts, dtype=np.int64).tolist()
        self.rng = rng
        self.loads = 0
        self.load_s_total = 0.0

    def charge(self, i: int) -> float:
        """Seconds request ``i`` spends loading its adapters on this dispatch."""
        k = self.counts[i]
        if k <= 0:
            return 0.0
        s = sum(self.times.sample(self.rng) for _ in range(k))
        self.loads += k
        self.load_s_total += s
        return s
