"""``hybrid-seed``: the seed's weighted GPU score (design section 4.1), vectorised.

score = w_usage * usage + w_priority * priority/5 + w_type * type + w_performance *
performance_index + w_health * health, with usage = 0.6 * free-memory share + 0.4 *
idle-compute share. The 4-weight form of the deployment guide (usage, priority,
performance, health) is the same formula with w_type = 0. The highest score wins;
ties go to the GPU listed first, as Python's ``max`` over the seed's dict does.

The priority term is the same for every GPU, so it never changes the winner: the
router makes priority act through the queue instead.

``count_inflight`` (default True) scores memory and utilization with the router's
own placements since the last sample; False scores the sampled state alone, as the
seed does, which herds bursts onto the GPU that looked idle (``hybrid-seed-sampled``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InvalidValue
from ..fleet import type_bit
from .base import Choice, argmax_first

SEED_WEIGHTS = {"usage": 0.35, "priority": 0.25, "type": 0.15, "performance": 0.15, "health": 0.10}
DEPLOYMENT_GUIDE_WEIGHTS = {"usage": 0.4, "priority": 0.3, "performance": 0.2, "health": 0.1}


def normalise_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Accept the seed's 5-weight or the deployment guide's 4-weight form."""
    if weights is None:
        return dict(SEED_WEIGHTS)
    unknown = set(weights) - set(SEED_WEIGHTS)
    if unknown:
        known = list(SEED_WEIGHTS)
        raise InvalidValue("weights", sorted(unknown), f"unknown weight; known: {known}")
    out = {k: float(weights.get(k, 0.0)) for k in SEED_WEIGHTS}
    for k, v in out.items():
        if not np.isfinite(v) or v < 0:
            raise InvalidValue(f"weights.{k}", v, "must be a finite number >= 0")
    if sum(out.values()) <= 0:
        raise InvalidValue("weights", dict(weights), "at least one weight must be > 0")
    return out


class HybridSeed:
    """The seed's ``select_gpu`` over the candidates the router found feasible."""

    def __init__(self, weights: Mapping[str, float] | None = None, count_inflight: bool = True):
        self.weights = normalise_weights(weights)
        self.count_inflight = bool(count_inflight)
        self.name = "hybrid-seed" if self.count_inflight else "hybrid-seed-sampled"

    def scores(self, choice: Choice) -> np.ndarray:
        """The seed score of every candidate, in candidate order."""
        f, c, w = choice.fleet, choice.candidates, self.weights
        if self.count_inflight:
            mem_used = f.memory_used_effective()[c]
            util = f.utilization_effective()[c]
        else:
            mem_used, util = f.memory_used[c], f.utilization[c]
        usage = 0.6 * (1.0 - mem_used / f.memory_total[c]) + 0.4 * (1.0 - util / 100.0)
        type_score = ((f.capability_bits[c] & type_bit(choice.request.type)) != 0) * 1.0
        priority_score = choice.request.priority / 5
        scores: np.ndarray = (
            w["usage"] * usage
            + w["priority"] * priority_score
            + w["type"] * type_score
            + w["performance"] * f.performance[c]
            + w["health"] * f.health[c]
        )
        return scores

    def choose(self, choice: Choice) -> int:
        return argmax_first(self.scores(choice), choice.candidates)
