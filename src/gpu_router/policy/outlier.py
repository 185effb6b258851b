"""Passive failure tracking in the style of Envoy's outlier detection (DESIGN 3.5).

- ``consecutive_failures`` failures in a row on a GPU eject it (a success resets
  the count). Failures reported while a GPU is ejected are not counted (they
  are work that was already running when it was ejected).
- The k-th ejection lasts ``base_ejection_s * k`` seconds, capped at
  ``max_ejection_s``. As in Envoy, the multiplier k decays: it drops by one for
  every full ``base_ejection_s`` a GPU spends back in service.
- Share cap: a GPU is ejected only if afterwards at most
  ``floor(max_ejected_share * fleet_size)`` GPUs are ejected for failures. As in
  Envoy ("if no hosts have been ejected, eject immediately"), one GPU may always
  be ejected when none is (``always_eject_one``; never when the share is 0). A
  GPU refused by the cap keeps its count, so its next failure tries again.
- An ejection ends by itself at ``ejected_until``: every query is a pure
  function of ``now``. After it ends the GPU's weight ramps linearly from
  ``slow_start_floor`` to 1 over ``slow_start_s`` seconds.

Maintenance and hard failures are the caller's; they are not counted here.
Times are seconds on the caller's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InvalidValue


def _number(name: str, value: object, low: float, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"outlier.{name}", value, "must be a finite number")
    if not low <= value <= high:
        raise InvalidValue(f"outlier.{name}", value, f"must be in [{low:g}, {high:g}]")


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Ejection thresholds; times in seconds, shares in [0, 1]."""

    consecutive_failures: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0
    max_ejected_share: float = 0.5
    slow_start_s: float = 30.0
    slow_start_floor: float = 0.1
    always_eject_one: bool = True

    def __post_init__(self) -> None:
        n = self.consecutive_failures
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidValue("outlier.consecutive_failures", n, "must be an integer >= 1")
        _number("base_ejection_s", self.base_ejection_s, 0.0)
        if self.base_ejection_s <= 0:
            raise InvalidValue("outlier.base_ejection_s", self.base_ejection_s, "must be > 0")
        _number("max_ejection_s", self.max_ejection_s, self.base_ejection_s)
        _number("max_ejected_share", self.max_ejected_share, 0.0, 1.0)
        _number("slow_start_s", self.slow_start_s, 0.0)
        _number("slow_start_floor", self.slow_start_floor, 0.0, 1.0)
        if self.slow_start_floor <= 0:
            raise InvalidValue("outlier.slow_start_floor", self.slow_start_floor, "must be > 0")
        if not isinstance(self.always_eject_one, bool):
            raise InvalidValue("outlier.always_eject_one", self.always_eject_one, "must be a bool")


class _Gpu:
    __slots__ = ("failures", "times", "until")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failures since the last success or ejection
        self.times = 0  # ejection multiplier (decays while in service)
        self.until: float | None = None  # end of the last ejection (past or future)


class OutlierDetector:
    """Consecutive-failure ejection with growing ejection times and a slow-start ramp."""

    __slots__ = ("_gpus", "config")

    def __init__(self, config: OutlierConfig | None = None) -> None:
        self.config = config or OutlierConfig()
        self._gpus: dict[str, _Gpu] = {}

    def record_success(self, gpu_id: str, now: float) -> None:
        """A request on ``gpu_id`` succeeded: the consecutive count starts again."""
        if not self._gpus:
            return
        g = self._gpus.get(gpu_id)
        if g is not None and not (g.until is not None and now < g.until):
            g.failures = 0

    def record_failure(self, gpu_id: str, now: float, fleet_size: int) -> bool:
        """A request on ``gpu_id`` failed at ``now``; True if this failure ejects the GPU.

        ``fleet_size``: GPUs in the fleet (the share cap's base)."""
        if isinstance(fleet_size, bool) or not isinstance(fleet_size, int) or fleet_size < 1:
            raise InvalidValue("fleet_size", fleet_size, "must be an integer >= 1")
        g = self._gpus.get(gpu_id)
        if g is None:
            g = self._gpus[gpu_id] = _Gpu()
        if g.until is not None and now < g.until:
            return False  # already ejected
        g.failures += 1
        cfg = self.config
        if g.failures < cfg.consecutive_failures:
            return False
        ejected = self.ejected_count(now)
        allowed = math.floor(cfg.max_ejected_share * fleet_size + 1e-9)
        if ejected + 1 > allowed and not (
            cfg.always_eject_one and ejected == 0 and cfg.max_ejected_share > 0
        ):
            return False
        if g.until is not None:  # decay: one step per base interval back in service
            g.times = max(0, g.times - int((now - g.until) // cfg.base_ejection_s))
        g.times += 1
        g.until = now + min(cfg.max_ejection_s, cfg.base_ejection_s * g.times)
        g.failures = 0
        return True

    def is_ejected(self, gpu_id: str, now: float) -> bool:
        g = self._gpus.get(gpu_id)
        return g is not None and g.until is not None and now < g.until

    def ejected_until(self, gpu_id: str) -> float | None:
        """End of the GPU's latest ejection (it may be in the past), or None if never."""
        g = self._gpus.get(gpu_id)
        return None if g is None else g.until

    def weight(self, gpu_id: str, now: float) -> float:
        """Share of its normal load a GPU should get: 0.0 while ejected, then a linear
        ramp from ``slow_start_floor`` to 1.0 over ``slow_start_s`` after it returns."""
        g = self._gpus.get(gpu_id)
        if g is None or g.until is None:
            return 1.0
        since = now - g.until
        if since < 0:
            return 0.0
        cfg = self.config
        if since >= cfg.slow_start_s:
            return 1.0
        return cfg.slow_start_floor + (1.0 - cfg.slow_start_floor) * since / cfg.slow_start_s

    def ejected_count(self, now: float) -> int:
        """GPUs ejected for failures at ``now``."""
        return sum(1 for g in self._gpus.values() if g.until is not None and now < g.until)

    def tracking(self) -> bool:
        """Whether any GPU has a failure record (else ``next_change`` is None)."""
        return bool(self._gpus)

    def next_change(self, now: float) -> float | None:
        """The earliest ejection end after ``now`` (when the caller should look again)."""
        if not self._gpus:
            return None
        ends = [g.until for g in self._gpus.values() if g.until is not None and g.until > now]
        return min(ends) if ends else None

    def consecutive_failures(self, gpu_id: str) -> int:
        g = self._gpus.get(gpu_id)
        return 0 if g is None else g.failures

    def times_ejected(self, gpu_id: str) -> int:
        """The ejection multiplier as of the latest ejection (decay is applied at the next)."""
        g = self._gpus.get(gpu_id)
        return 0 if g is None else g.times

    def reset(self, gpu_id: str) -> None:
        """Forget a GPU (replaced, or an admin lifted its ejection)."""
        self._gpus.pop(gpu_id, None)
