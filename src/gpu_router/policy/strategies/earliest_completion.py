"""``earliest-completion`` (ours): place where the request is expected to finish first.

expected finish on GPU i = (work placed and unfinished on i) / slots_i + duration / speed_i,
in seconds from now, with the request's duration from the estimator (reference-GPU
seconds). Health acts as a filter and a penalty: GPUs whose seed health score is
below ``min_health`` are used only when nothing healthier is feasible, and the
expected finish is divided by ``(1 - health_penalty) + health_penalty * health`` and
by the slow-start weight of a GPU just back from ejection. Ties go to the first GPU.

Why (docs/strategies.md has the numbers): on a heterogeneous fleet the seed score
ignores speed, so slow GPUs take work a fast GPU would finish sooner; counting the
router's own placed work removes the herding that lagged utilization causes.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidValue
from ..fleet import FleetView
from .base import Choice, argmin_first


class EarliestCompletion:
    """Minimise the expected completion time, health-filtered and health-penalised."""

    name = "earliest-completion"

    def __init__(self, min_health: float = 0.3, health_penalty: float = 0.5) -> None:
        for key, value in (("min_health", min_health), ("health_penalty", health_penalty)):
            if not 0.0 <= float(value) <= 1.0:
                raise InvalidValue(key, value, "must be within [0, 1]")
        self.min_health = float(min_health)
        self.health_penalty = float(health_penalty)
        self._cache_key: tuple[int, int] | None = None

    def _refresh(self, f: FleetView) -> None:
        """Per-GPU constants, recomputed only when health, speed or weight change."""
        factor = (1.0 - self.health_penalty) + self.health_penalty * f.health
        penalty = 1.0 / (np.maximum(factor, 1e-6) * f.weight)
        self._work_coef = penalty / f.slots  # per second of placed work
        self._run_coef = penalty / f.speed  # per second of reference work
        self._unhealthy = f.health < self.min_health
        self._any_unhealthy = bool(self._unhealthy.any())
        # the same constants as Python lists, for ``choose_listed``
        self._work_list: list[float] = self._work_coef.tolist()
        self._run_list: list[float] = self._run_coef.tolist()
        self._unhealthy_list: list[bool] = self._unhealthy.tolist()
        self._cache_key = (id(f), f.version)

    def expected_finish_s(self, choice: Choice) -> np.ndarray:
        """Penalised expected finish time (s from now) of every candidate."""
        f, c = choice.fleet, choice.candidates
        if self._cache_key != (id(f), f.version):
            self._refresh(f)
        finish: np.ndarray = (
            f.work_left_s[c] * self._work_coef[c] + choice.duration_s * self._run_coef[c]
        )
        return finish

    def choose(self, choice: Choice) -> int:
        finish = self.expected_finish_s(choice)
        if self._any_unhealthy:
            unhealthy = self._unhealthy[choice.candidates]
            if not unhealthy.all():
                finish[unhealthy] = np.inf
        return argmin_first(finish, choice.candidates)

    def choose_listed(self, f: FleetView, candidates: list[int], duration_s: float) -> int:
        """``choose`` in pure Python over ``candidates`` (ascending fleet indices, not
        empty), for small fleets: the same float arithmetic, filter and tie-break."""
        if self._cache_key != (id(f), f.version):
            self._refresh(f)
        if self._any_unhealthy:
            bad = self._unhealthy_list
            healthy = [i for i in candidates if not bad[i]]
            if healthy:
                candidates = healthy
        work, work_coef, run_coef = f.work_list, self._work_list, self._run_list
        best_i = candidates[0]
        best = work[best_i] * work_coef[best_i] + duration_s * run_coef[best_i]
        for i in candidates[1:]:
            finish = work[i] * work_coef[i] + duration_s * run_coef[i]
            if finish < best:
                best, best_i = finish, i
        return best_i
