"""The Model Manager: what each model needs (seed section 4.1, ``get_model_requirements``).

A registry of models: weights memory (MB, resident in a GPU's model cache), load
time (seconds to bring the weights onto a GPU from storage), the GPU types (names)
it may run on (empty: any) and its minimum compute capability. Entries come from
configuration (``ModelsConfig.models``) and are learned online: each observed load
(``observe_load``) moves the model's load-time estimate by an EWMA (``alpha``),
starting at the first observation. A model nobody configured or measured gets the
defaults (``default_memory_mb``, ``default_load_s``), as the estimator does for
durations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidValue


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(name, value, "must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidValue(name, value, "must be >= 0" if allow_zero else "must be > 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model: ``memory_mb`` of weights, ``load_s`` expected load time (s),
    ``gpu_types`` GPU names it may run on (empty: any), ``min_compute_capability``."""

    memory_mb: float
    load_s: float
    gpu_types: frozenset[str] = frozenset()
    min_compute_capability: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _positive("models.memory_mb", self.memory_mb, allow_zero=True)
        _positive("models.load_s", self.load_s, allow_zero=True)

    @classmethod
    def from_mapping(cls, model_id: str, data: Mapping[str, Any], base: ModelInfo) -> ModelInfo:
        """Build from plain data (YAML); missing keys take ``base``'s values."""
        known = {"memory_mb", "load_s", "gpu_types", "min_compute_capability"}
        for key in data:
            if key not in known:
                raise InvalidValue(f"models.models.{model_id}.{key}", data[key], "unknown key")
        cc = data.get("min_compute_capability", base.min_compute_capability)
        return cls(
            memory_mb=data.get("memory_mb", base.memory_mb),
            load_s=data.get("load_s", base.load_s),
            gpu_types=frozenset(data.get("gpu_types", base.gpu_types)),
            min_compute_capability=None if cc is None else (int(cc[0]), int(cc[1])),
        )


@dataclass(frozen=True)
class ModelsConfig:
    """Model locality settings (``RouterConfig.models``; None there turns it off).

    ``cache_share``: share of each GPU's total memory its model cache may hold (weights
    of resident models; requests' own memory is reserved apart). ``alpha``: EWMA step of
    learned load times. ``models``: per model id, a mapping of ``ModelInfo`` keys.
    ``report_grace_s``: a worker's report of its models taken less than this after a
    load ended does not erase that model (``model_reports``).
    """

    default_memory_mb: float = 6_500.0
    default_load_s: float = 22.7
    cache_share: float = 0.5
    alpha: float = 0.2
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    report_grace_s: float = 2.0

    def __post_init__(self) -> None:
        _positive("models.report_grace_s", self.report_grace_s, allow_zero=True)
        _positive("models.default_memory_mb", self.default_memory_mb, allow_zero=True)
        _positive("models.default_load_s", self.default_load_s, allow_zero=True)
        for key in ("cache_share", "alpha"):
            v = _positive(f"models.{key}", getattr(self, key))
            if v > 1:
                raise InvalidValue(f"models.{key}", v, "must be within (0, 1]")
        for mid, data in self.models.items():
            ModelInfo.from_mapping(mid, data, self.default)  # fails early, naming the key

    @property
    def default(self) -> ModelInfo:
        return ModelInfo(self.default_memory_mb, self.default_load_s)


class ModelRegistry:
    """Configured models plus what was learned from observed loads."""

    def __init__(self, config: ModelsConfig | None = None) -> None:
        self.config = config = config or ModelsConfig()
        self.default = config.default
        self._models: dict[str, ModelInfo] = {
            mid: ModelInfo.from_mapping(mid, data, self.default)
            for mid, data in config.models.items()
        }
        #: model id -> (observed loads, EWMA of their seconds)
        self._learned: dict[str, tuple[int, float]] = {}

    def info(self, model_id: str) -> ModelInfo:
        """The model's entry (the defaults for an unknown model), learned load time in."""
        base = self._models.get(model_id, self.default)
        learned = self._learned.get(model_id)
        if learned is None:
            return base
        return ModelInfo(base.memory_mb, learned[1], base.gpu_types, base.min_compute_capability)

    def load_s(self, model_id: str) -> float:
        """Expected seconds to load ``model_id`` onto a GPU."""
        learned = self._learned.get(model_id)
        if learned is not None:
            return learned[1]
        return self._models.get(model_id, self.default).load_s

    def memory_mb(self, model_id: str) -> float:
        return self._models.get(model_id, self.default).memory_mb

    def known(self, model_id: str) -> bool:
        """Whether the model is configured or was seen loading."""
        return model_id in self._models or model_id in self._learned

    def constrained(self) -> list[str]:
        """Configured models limited to some GPU types or a minimum compute capability."""
        return [
            mid
            for mid, info in self._models.items()
            if info.gpu_types or info.min_compute_capability is not None
        ]

    def observe_load(self, model_id: str, seconds: float) -> None:
        """One measured load of ``model_id`` took ``seconds``."""
        _positive("load_s", seconds, allow_zero=True)
        old = self._learned.get(model_id)
        if old is None:
            self._learned[model_id] = (1, float(seconds))
        else:
            a = self.config.alpha
            self._learned[model_id] = (old[0] + 1, old[1] + a * (seconds - old[1]))

    def observed_loads(self, model_id: str) -> int:
        return self._learned.get(model_id, (0, 0.0))[0]

    def runs_on(self, model_id: str, gpu_name: str) -> bool:
        """Whether ``model_id`` may run on a GPU of type ``gpu_name``."""
        types = self._models.get(model_id, self.default).gpu_types
        return not types or gpu_name in types

    def get_model_requirements(self, model_id: str | None) -> dict[str, Any]:
        """The seed's requirements mapping (``min_memory_mb``, ``min_compute_capability``
        as "major.minor" or absent) plus ``load_s`` and ``gpu_types``; for the seed's
        ``is_gpu_compatible`` and for callers. None or unknown: the defaults."""
        info = self.info(model_id) if model_id else self.default
        out: dict[str, Any] = {
            "min_memory_mb": info.memory_mb,
            "load_s": info.load_s,
            "gpu_types": sorted(info.gpu_types),
        }
        if info.min_compute_capability is not None:
            major, minor = info.min_compute_capability
            out["min_compute_capability"] = f"{major}.{minor}"
        return out
