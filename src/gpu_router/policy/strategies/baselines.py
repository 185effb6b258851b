"""Baseline strategies: round-robin, random, least-loaded, join-shortest-queue,
power-of-d and least-work-left. Each counts the router's own placements."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidValue
from .base import Choice, argmin_first


class RoundRobin:
    """The next feasible GPU after the one chosen last, in fleet order."""

    name = "round-robin"

    def __init__(self) -> None:
        self._last = -1

    def choose(self, choice: Choice) -> int:
        c = choice.candidates
        k = int(np.searchsorted(c, self._last, side="right"))
        self._last = int(c[k % len(c)])
        return self._last


class Random:
    """A feasible GPU drawn uniformly with the run's generator."""

    name = "random"

    def choose(self, choice: Choice) -> int:
        return int(choice.candidates[choice.rng.integers(len(choice.candidates))])


def assigned(choice: Choice) -> np.ndarray:
    """Requests the router has running or queued on each candidate."""
    f, c = choice.fleet, choice.candidates
    counts: np.ndarray = f.running[c] + f.queued[c]
    return counts


class LeastLoaded:
    """The GPU with the lowest load: the larger of its (lagged) utilization and its
    share of occupied slots including queued work; ties to the first."""

    name = "least-loaded"

    def choose(self, choice: Choice) -> int:
        f, c = choice.fleet, choice.candidates
        load = np.maximum(f.utilization_effective()[c] / 100.0, assigned(choice) / f.slots[c])
        return argmin_first(load, c)


class JoinShortestQueue:
    """The GPU with the fewest requests running or queued per slot."""

    name = "join-shortest-queue"

    def choose(self, choice: Choice) -> int:
        return argmin_first(
            assigned(choice) / choice.fleet.slots[choice.candidates], choice.candidates
        )


class PowerOfD:
    """Sample ``d`` feasible GPUs at random, join the one with the fewest requests."""

    def __init__(self, d: int = 2) -> None:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise InvalidValue("d", d, "must be an integer >= 1")
        self.d = d
        self.name = "power-of-d" if d == 2 else f"power-of-{d}"

    def choose(self, choice: Choice) -> int:
        c = choice.candidates
        if len(c) > self.d:
            c = c[choice.rng.choice(len(c), size=self.d, replace=False)]
        return argmin_first(
            (choice.fleet.running[c] + choice.fleet.queued[c]) / choice.fleet.slots[c], c
        )


class LeastWorkLeft:
    """The GPU whose placed, unfinished work (expected seconds) is smallest."""

    name = "least-work-left"

    def choose(self, choice: Choice) -> int:
        f, c = choice.fleet, choice.candidates
        return argmin_first(f.work_left_s[c] / f.slots[c], c)
