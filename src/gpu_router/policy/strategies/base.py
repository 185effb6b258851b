"""What a routing strategy is: given a request and the feasible GPUs, pick one."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from ..fleet import FleetView
from ..types import Request

if TYPE_CHECKING:
    from ..residency import Residency

#: what a locality strategy returns to hold a request back (delay scheduling): the
#: dispatcher skips it and asks again at the next change or at its bound
#: (``max_delay_s`` after submission, the strategy's attribute)
DEFER = -1


class Choice(NamedTuple):
    """Everything a strategy may look at for one decision (a tuple: cheap to build).

    ``candidates`` are indices into ``fleet`` of the GPUs the request may go to now
    (compatible, available, with memory and, under late binding, a free slot); never
    empty. ``duration_s`` is the estimated run time on a speed-1.0 GPU, in seconds.
    ``models`` is the fleet's model residency when locality is on (else None).
    ``may_defer`` False: the strategy must pick a candidate (no ``DEFER``).
    """

    request: Request
    duration_s: float
    fleet: FleetView
    candidates: np.ndarray
    rng: np.random.Generator
    now: float
    models: Residency | None = None
    may_defer: bool = True


class Strategy(Protocol):
    """A routing strategy. ``choose`` returns one element of ``choice.candidates``, or
    ``DEFER`` (strategies with a ``max_delay_s`` only)."""

    name: str

    def choose(self, choice: Choice) -> int: ...


def argmin_first(values: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate with the smallest value; ties go to the earliest candidate."""
    return int(candidates[values.argmin()])  # the method: np.argmin's wrapper costs more


def argmax_first(values: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate with the largest value; ties go to the earliest candidate."""
    return int(candidates[values.argmax()])
