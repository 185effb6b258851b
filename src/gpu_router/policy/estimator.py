"""Resource estimator: memory (MB) and duration (s on the speed-1.0 reference GPU).

Lookup order for each of the two values separately:

1. the value the request declares, when > 0 (``source="declared"``), unless
   ``learned_overrides_declared`` is set and a trusted learned value exists;
2. the learned EWMA for (model_id, type, batch bucket), batch bucket being
   the batch size rounded up to a power of two (1, 2, 4, 8, ...);
3. the learned EWMA for (model_id, type) over every batch size;
4. the default of the request type (``source="default"``).

A learned entry is trusted once it holds ``min_observations`` observations.
Learning is online from completions: ``observe`` takes the run time already
normalised to the reference GPU by the caller (run time * GPU speed). The EWMA
starts at the first observation and then moves by ``alpha`` toward each new one.

Defaults per type (duration s, memory MB), guesses for a model nobody has
measured, sized for an 80 GB H100: inference 2 s / 8192 MB, training 600 s /
40960 MB, fine-tuning 300 s / 24576 MB, embedding 0.5 s / 4096 MB, batch 60 s /
16384 MB; any other type 60 s / 16384 MB (``fallback``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InvalidValue

DEFAULT_BY_TYPE: dict[str, tuple[float, float]] = {
    "inference": (2.0, 8192.0),
    "training": (600.0, 40960.0),
    "fine-tuning": (300.0, 24576.0),
    "embedding": (0.5, 4096.0),
    "batch": (60.0, 16384.0),
}
SOURCES = ("declared", "learned", "default")
_ANY_BATCH = 0  # bucket key of the (model_id, type) entry over every batch size
#: (model_id, type, batch bucket or _ANY_BATCH) -> [count, ewma]
_Table = dict[tuple[str, str, int], list[float]]


def _pair(name: str, value: object) -> tuple[float, float]:
    """A (duration_s, memory_mb) pair, both finite and > 0."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidValue(name, value, "must be a pair (duration_s, memory_mb)")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
            raise InvalidValue(name, value, "duration_s and memory_mb must be finite and > 0")
    return float(value[0]), float(value[1])


@dataclass(frozen=True, slots=True)
class Estimate:
    """memory_mb in MB, duration_s in seconds on the reference GPU; ``source`` says where
    the duration came from, ``memory_source`` where the memory did."""

    memory_mb: float
    duration_s: float
    source: str
    memory_source: str


@dataclass(frozen=True, slots=True)
class EstimatorConfig:
    """alpha: EWMA weight of a new observation in (0, 1]; defaults: type -> (duration_s,
    memory_mb); fallback: the same for a type without a default."""

    alpha: float = 0.2
    min_observations: int = 3
    learned_overrides_declared: bool = False
    defaults: Mapping[str, tuple[float, float]] = field(default_factory=lambda: DEFAULT_BY_TYPE)
    fallback: tuple[float, float] = (60.0, 16384.0)

    def __post_init__(self) -> None:
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a <= 1:
            raise InvalidValue("estimator.alpha", a, "must be in (0, 1]")
        m = self.min_observations
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise InvalidValue("estimator.min_observations", m, "must be an integer >= 1")
        if not isinstance(self.learned_overrides_declared, bool):
            raise InvalidValue(
                "estimator.learned_overrides_declared",
                self.learned_overrides_declared,
                "must be true or false",
            )
        if not isinstance(self.defaults, Mapping):
            raise InvalidValue("estimator.defaults", self.defaults, "must be a mapping")
        table = {str(k): _pair(f"estimator.defaults.{k}", v) for k, v in self.defaults.items()}
        object.__setattr__(self, "defaults", table)
        object.__setattr__(self, "fallback", _pair("estimator.fallback", self.fallback))


def _learn(table: _Table, keys: tuple[tuple[str, str, int], ...], x: float, alpha: float) -> None:
    """One observation ``x`` into the EWMA entries ``keys`` of ``table``."""
    for key in keys:
        entry = table.get(key)
        if entry is None:
            table[key] = [1, float(x)]
        else:
            entry[0] += 1
            entry[1] += alpha * (x - entry[1])


def batch_bucket(batch_size: int) -> int:
    """The batch size rounded up to a power of two (1 -> 1, 3 -> 4, 5 -> 8)."""
    if batch_size.__class__ is int and batch_size >= 1:  # the common case, checked cheaply
        return 1 << (batch_size - 1).bit_length()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidValue("batch_size", batch_size, "must be an integer >= 1")
    return 1 << (batch_size - 1).bit_length()


class ResourceEstimator:
    """Online estimates keyed by (model_id, type, batch bucket); state in plain dicts."""

    __slots__ = ("_dur", "_mem", "config")

    def __init__(self, config: EstimatorConfig | None = None) -> None:
        self.config = config or EstimatorConfig()
        self._dur: _Table = {}
        self._mem: _Table = {}

    def _learned(self, table: _Table, model_id: str, type: str, bucket: int) -> float | None:
        need = self.config.min_observations
        entry = table.get((model_id, type, bucket))
        if entry is not None and entry[0] >= need:
            return entry[1]
        entry = table.get((model_id, type, _ANY_BATCH))
        if entry is not None and entry[0] >= need:
            return entry[1]
        return None

    def _pick(
        self,
        declared: float | None,
        table: _Table,
        model_id: str,
        type: str,
        bucket: int,
        default: float,
    ) -> tuple[float, str]:
        has_declared = declared is not None and declared > 0
        if has_declared and not self.config.learned_overrides_declared:
            return float(declared), "declared"  # type: ignore[arg-type]
        learned = self._learned(table, model_id, type, bucket)
        if learned is not None:
            return learned, "learned"
        if has_declared:
            return float(declared), "declared"  # type: ignore[arg-type]
        return default, "default"

    def estimate(
        self,
        model_id: str,
        type: str,
        batch_size: int = 1,
        declared_memory_mb: float | None = None,
        declared_duration_s: float | None = None,
    ) -> Estimate:
        """Memory and reference duration of one request; declared values count when > 0."""
        bucket = batch_bucket(batch_size)
        dur_default, mem_default = self.config.defaults.get(type, self.config.fallback)
        dur, dsrc = self._pick(declared_duration_s, self._dur, model_id, type, bucket, dur_default)
        mem, msrc = self._pick(declared_memory_mb, self._mem, model_id, type, bucket, mem_default)
        return Estimate(mem, dur, dsrc, msrc)

    def sizes(
        self,
        model_id: str,
        type: str,
        batch_size: int,
        declared_memory_mb: float,
        declared_duration_s: float,
    ) -> tuple[float, float]:
        """(memory_mb, duration_s) of ``estimate`` without building an ``Estimate`` (the
        per-request path): a request that declares both skips every lookup."""
        cfg = self.config
        bucket = batch_bucket(batch_size)
        if (
            declared_memory_mb > 0
            and declared_duration_s > 0
            and not cfg.learned_overrides_declared
        ):
            return float(declared_memory_mb), float(declared_duration_s)
        dur_default, mem_default = cfg.defaults.get(type, cfg.fallback)
        key, any_key = (model_id, type, bucket), (model_id, type, _ANY_BATCH)
        overrides, need = cfg.learned_overrides_declared, cfg.min_observations
        out = []
        for declared, table, default in (
            (declared_memory_mb, self._mem, mem_default),
            (declared_duration_s, self._dur, dur_default),
        ):  # ``_pick``'s value alone (no source), the two keys built once
            if declared > 0 and not overrides:
                out.append(float(declared))
                continue
            entry = table.get(key)
            if entry is None or entry[0] < need:
                entry = table.get(any_key)
            if entry is not None and entry[0] >= need:
                out.append(entry[1])
            else:
                out.append(float(declared) if declared > 0 else default)
        return out[0], out[1]

    def observe(
        self,
        model_id: str,
        type: str,
        batch_size: int,
        duration_s_reference: float,
        memory_mb: float | None = None,
    ) -> None:
        """Learn from a completion: its run time on the reference GPU (s) and, if known,
        its peak memory (MB)."""
        if batch_size.__class__ is int and batch_size >= 1:  # ``batch_bucket``, inline
            bucket = 1 << (batch_size - 1).bit_length()
        else:
            bucket = batch_bucket(batch_size)
        d = duration_s_reference
        if not (d.__class__ is float and 0.0 <= d < math.inf) and (  # cheap common case first
            isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d < math.inf
        ):
            raise InvalidValue("duration_s_reference", d, "must be a finite number >= 0")
        if memory_mb is not None and (
            isinstance(memory_mb, bool)
            or not isinstance(memory_mb, int | float)
            or not 0 < memory_mb < math.inf
        ):
            raise InvalidValue("memory_mb", memory_mb, "must be a finite number > 0")
        alpha = self.config.alpha
        keys = ((model_id, type, bucket), (model_id, type, _ANY_BATCH))
        table = self._dur
        for key in keys:  # ``_learn``, inline (once per completion)
            entry = table.get(key)
            if entry is None:
                table[key] = [1, float(d)]
            else:
                entry[0] += 1
                entry[1] += alpha * (d - entry[1])
        if memory_mb is not None:
            _learn(self._mem, keys, memory_mb, alpha)

    def learned(
        self, model_id: str, type: str, batch_size: int | None = None
    ) -> tuple[int, float | None, float | None]:
        """(observations, duration EWMA, memory EWMA) of one entry; batch_size None: the
        entry over every batch size. Values are None while nothing was observed."""
        bucket = _ANY_BATCH if batch_size is None else batch_bucket(batch_size)
        d = self._dur.get((model_id, type, bucket))
        m = self._mem.get((model_id, type, bucket))
        return (
            0 if d is None else int(d[0]),
            None if d is None else d[1],
            None if m is None else m[1],
        )
