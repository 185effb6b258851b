"""The strategy registry: every routing strategy, selectable by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidValue
from .base import DEFER, Choice, Strategy
from .baselines import JoinShortestQueue, LeastLoaded, LeastWorkLeft, PowerOfD, Random, RoundRobin
from .earliest_completion import EarliestCompletion
from .hybrid_seed import DEPLOYMENT_GUIDE_WEIGHTS, SEED_WEIGHTS, HybridSeed
from .locality import LocalityCost, LocalityReplicate, WarmFirst

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "hybrid-seed": HybridSeed,
    "hybrid-seed-sampled": lambda **kw: HybridSeed(**{**kw, "count_inflight": False}),
    "round-robin": RoundRobin,
    "random": Random,
    "least-loaded": LeastLoaded,
    "join-shortest-queue": JoinShortestQueue,
    "power-of-d": PowerOfD,
    "least-work-left": LeastWorkLeft,
    "earliest-completion": EarliestCompletion,
    "warm-first": WarmFirst,
    "locality-cost": LocalityCost,
    "locality-replicate": LocalityReplicate,
}
#: the strategies that look at model residency (the rest are locality-blind)
LOCALITY_STRATEGIES = ("warm-first", "locality-cost", "locality-replicate")

DEFAULT_STRATEGY = "earliest-completion"
#: Accepted for the deployment guide's ``load_balancer.strategy: "hybrid"``.
ALIASES = {"hybrid": "hybrid-seed"}


def make_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    """Build the strategy called ``name`` with its options; errors name what is wrong."""
    key = ALIASES.get(name, name)
    if key not in STRATEGIES:
        raise InvalidValue("strategy", name, f"unknown; known: {sorted(STRATEGIES)}")
    try:
        return STRATEGIES[key](**dict(options or {}))
    except TypeError as exc:
        raise InvalidValue("strategy_options", dict(options or {}), str(exc)) from None


__all__ = [
    "ALIASES",
    "DEFAULT_STRATEGY",
    "DEFER",
    "DEPLOYMENT_GUIDE_WEIGHTS",
    "LOCALITY_STRATEGIES",
    "SEED_WEIGHTS",
    "STRATEGIES",
    "Choice",
    "Strategy",
    "make_strategy",
]
