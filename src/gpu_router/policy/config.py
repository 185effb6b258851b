"""Router configuration: one validated value, built from a mapping or keywords."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InvalidValue
from .estimator import EstimatorConfig
from .models import ModelsConfig
from .outlier import OutlierConfig
from .queue import QueueConfig
from .quota import QuotaLimits
from .strategies import DEFAULT_STRATEGY, make_strategy

BINDINGS = ("late", "early")


@dataclass(frozen=True)
class RetryConfig:
    """Bounded retries after a worker failure: backoff base * 2**(retry-1), capped (s)."""

    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidValue("retry.max_retries", self.max_retries, "must be an integer")
        if self.max_retries < 0:
            raise InvalidValue("retry.max_retries", self.max_retries, "must be >= 0")
        for key in ("backoff_base_s", "backoff_cap_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < float("inf"):
                raise InvalidValue(f"retry.{key}", v, "must be a finite number >= 0")

    def backoff_s(self, retry: int) -> float:
        """Wait before retry number ``retry`` (1-based), in seconds."""
        return min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** (retry - 1))


@dataclass(frozen=True)
class RouterConfig:
    """Everything the Router needs besides the fleet and the random generator.

    binding: "late" dispatches from the central queue to a GPU with a free slot
    (the pooled M/M/c system); "early" places each request on a GPU's own queue
    at once (what round-robin, JSQ and power-of-d are usually measured as).
    context_overhead_mb: memory a request costs beyond its own (CUDA context).
    quotas_enabled: False admits every compatible request (for theory checks).
    dispatch_scan_limit: how deep the dispatcher looks past a request that does
    not fit (backfilling).
    models: model locality (``models.ModelsConfig``); None (default) leaves it off:
    every GPU is equally ready for every model.
    """

    strategy: str = DEFAULT_STRATEGY
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    binding: str = "late"
    queue: QueueConfig = field(default_factory=QueueConfig)
    quotas: QuotaLimits = field(default_factory=QuotaLimits)
    quotas_enabled: bool = True
    retry: RetryConfig = field(default_factory=RetryConfig)
    outlier: OutlierConfig = field(default_factory=OutlierConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    default_timeout_s: float | None = None
    context_overhead_mb: float = 0.0
    dispatch_scan_limit: int = 32
    models: ModelsConfig | None = None

    def __post_init__(self) -> None:
        make_strategy(self.strategy, self.strategy_options)  # fails early, naming the key
        if self.binding not in BINDINGS:
            raise InvalidValue("binding", self.binding, f"must be one of {BINDINGS}")
        if self.default_timeout_s is not None and not self.default_timeout_s > 0:
            raise InvalidValue("default_timeout_s", self.default_timeout_s, "must be > 0")
        if not 0 <= self.context_overhead_mb < float("inf"):
            raise InvalidValue("context_overhead_mb", self.context_overhead_mb, "must be >= 0")
        if not isinstance(self.dispatch_scan_limit, int) or self.dispatch_scan_limit < 1:
            raise InvalidValue("dispatch_scan_limit", self.dispatch_scan_limit, "must be >= 1")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RouterConfig:
        """Build from plain data (YAML), nested blocks included; unknown keys are errors."""
        nested = {
            "queue": QueueConfig,
            "quotas": QuotaLimits,
            "retry": RetryConfig,
            "outlier": OutlierConfig,
            "estimator": EstimatorConfig,
            "models": ModelsConfig,
        }
        known = set(cls.__dataclass_fields__)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise InvalidValue(f"router.{key}", value, f"unknown key; known: {sorted(known)}")
            if key in nested and isinstance(value, Mapping):
                sub = nested[key]
                sub_known = {f.name for f in fields(sub)}
                for k in value:
                    if k not in sub_known:
                        raise InvalidValue(
                            f"router.{key}.{k}",
                            value[k],
                            f"unknown key; known: {sorted(sub_known)}",
                        )
                value = sub(**value)
            kwargs[key] = value
        return cls(**kwargs)
