"""The router's view of its fleet as numpy arrays: sampled state plus its own accounting.

Index ``i`` of every array is the GPU ``gpu_ids[i]``. Sampled fields come from the
last ``GpuState`` snapshot (lagged, as NVML is); accounting fields (``running``,
``queued``, ``reserved_mb``, ``work_left_s``, ``pending_mb``) are the router's own
count of its placements, exact at all times. Strategies score with both, so a
burst placed between two samples is never sent to the GPU that merely looked idle.

The accounting the placement loops read per decision (``open``, ``free_mb``,
``work_left_s``, ``running``, ``slots``, ``speed``) is mirrored in plain Python lists
(``*_list``) written in step with the arrays: on a small fleet one numpy scalar read
costs more than a pure-Python scan of every GPU. Write them only through the methods.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import InvalidValue
from .health import calculate_health_score
from .types import GpuState, GpuStatus, RequestType

#: Bit of each request type in ``FleetView.capability_bits``; unknown types share the last bit.
TYPE_BITS = {t.value: 1 << i for i, t in enumerate(RequestType)}
_OTHER_BIT = 1 << len(TYPE_BITS)


def type_bit(request_type: str) -> int:
    """The capability bit of a request type."""
    return TYPE_BITS.get(request_type, _OTHER_BIT)


def _capability_bits(capabilities: Iterable[str]) -> int:
    bits = 0
    for c in capabilities:
        bits |= type_bit(c)
    return bits


class FleetView:
    """Arrays over the fleet; mutated only by the Router that owns it."""

    def __init__(self, gpus: Iterable[GpuState]) -> None:
        states = list(gpus)
        if not states:
            raise InvalidValue("gpus", states, "the fleet needs at least one GPU")
        self.gpu_ids = [g.gpu_id for g in states]
        self.index = {gid: i for i, gid in enumerate(self.gpu_ids)}
        if len(self.index) != len(states):
            raise InvalidValue("gpus", self.gpu_ids, "GPU ids must be unique")
        n = len(states)
        self.size = n
        self.states: list[GpuState] = states
        f = np.zeros
        self.memory_total = f(n)
        self.memory_used = f(n)
        self.utilization = f(n)
        self.health = f(n)
        self.performance = f(n)
        self.speed = f(n)
        self.slots = f(n, dtype=np.int64)
        self.compute_capability = f(n, dtype=np.int64)  # major * 100 + minor
        self.capability_bits = f(n, dtype=np.int64)
        self.status_ok = f(n, dtype=bool)  # sampled status is active
        # the router's own accounting
        self.running = f(n, dtype=np.int64)  # slots in use (a request holds compute_units)
        self.queued = f(n, dtype=np.int64)
        self.reserved_mb = f(n)
        self.pending_mb = f(n)  # memory placed after the last sample was taken
        self.work_left_s = f(n)  # expected seconds of work placed and not finished
        self.weight = np.ones(n)  # slow-start weight after an ejection, (0, 1]
        self.down = f(n, dtype=bool)  # crashed, ejected, maintenance, restarting
        self._up = np.ones(n, dtype=bool)
        self.free_mb = f(n)  # memory_total - reserved_mb, kept in step
        self.open = np.zeros(n, dtype=bool)  # up and with a free slot
        self.open_count = 0
        # pure-Python mirrors of the hot accounting (same values, written in step)
        self.open_list = [False] * n
        self.free_list = [0.0] * n
        self.work_list = [0.0] * n
        self.running_list = [0] * n
        self.slots_list = [0] * n
        self.speed_list = [0.0] * n
        self.up_list = [True] * n
        #: slots of the GPUs that may take work (sampled active, not down), kept in step
        self.slots_available = 0
        self.version = 0  # bumped when health, speed or weight change (for strategy caches)
        for i, g in enumerate(states):
            self.observe(i, g)

    _ARRAYS = (
        ("memory_total", float),
        ("memory_used", float),
        ("utilization", float),
        ("health", float),
        ("performance", float),
        ("speed", float),
        ("slots", np.int64),
        ("compute_capability", np.int64),
        ("capability_bits", np.int64),
        ("status_ok", bool),
        ("running", np.int64),
        ("queued", np.int64),
        ("reserved_mb", float),
        ("pending_mb", float),
        ("work_left_s", float),
        ("down", bool),
        ("_up", bool),
        ("free_mb", float),
        ("open", bool),
    )

    def append(self, g: GpuState) -> int:
        """A GPU joins the fleet (elastic fleet): its index, at the end; every array
        grows by one and the sample is taken. InvalidValue for an id already present."""
        if g.gpu_id in self.index:
            raise InvalidValue("gpu_id", g.gpu_id, "is in the fleet already")
        i = self.size
        for name, dtype in self._ARRAYS:
            setattr(self, name, np.append(getattr(self, name), np.zeros(1, dtype=dtype)))
        self._up[i] = True
        self.weight = np.append(self.weight, 1.0)
        self.gpu_ids.append(g.gpu_id)
        self.index[g.gpu_id] = i
        self.states.append(g)
        self.size += 1
        self.open_list.append(False)
        self.free_list.append(0.0)
        self.work_list.append(0.0)
        self.running_list.append(0)
        self.slots_list.append(0)
        self.speed_list.append(0.0)
        self.up_list.append(True)
        self.observe(i, g)
        return i

    def observe(self, i: int, g: GpuState) -> None:
        """Take a new sample of GPU ``i``."""
        self.states[i] = g
        self.memory_total[i] = g.memory_total_mb
        self.memory_used[i] = g.memory_used_mb
        self.utilization[i] = g.utilization_pct
        self.health[i] = calculate_health_score(g)
        self.performance[i] = g.performance_index
        self.speed[i] = g.speed
        self.speed_list[i] = float(g.speed)
        self.slots[i] = g.slots
        self.compute_capability[i] = g.compute_capability[0] * 100 + g.compute_capability[1]
        self.capability_bits[i] = _capability_bits(g.capabilities)
        ok = g.status == GpuStatus.ACTIVE
        self.status_ok[i] = ok
        old = self.slots_list[i] if self.up_list[i] else 0
        self.slots_list[i] = g.slots
        self._set_up(i, ok and not bool(self.down[i]), old)
        free = float(g.memory_total_mb - self.reserved_mb[i])
        self.free_mb[i] = free
        self.free_list[i] = free
        self._reopen(i)
        self.version += 1

    def _set_up(self, i: int, up: bool, old_contribution: int) -> None:
        """GPU ``i`` may take work (``up``); keeps ``slots_available`` in step."""
        self._up[i] = up
        self.up_list[i] = up
        self.slots_available += (self.slots_list[i] if up else 0) - old_contribution

    def _reopen(self, i: int) -> None:
        now_open = self.up_list[i] and self.running_list[i] < self.slots_list[i]
        if now_open != self.open_list[i]:
            self.open[i] = now_open
            self.open_list[i] = now_open
            self.open_count += 1 if now_open else -1

    def occupy(self, i: int, memory_mb: float, units: int = 1) -> None:
        """A request starts on GPU ``i``: ``units`` slots and ``memory_mb`` taken."""
        running = self.running_list[i] + units
        self.running_list[i] = running
        self.running[i] = running
        self.reserved_mb[i] += memory_mb
        free = self.free_list[i] - memory_mb
        self.free_list[i] = free
        self.free_mb[i] = free
        self.pending_mb[i] += memory_mb
        if running >= self.slots_list[i] and self.open_list[i]:
            self.open[i] = False
            self.open_list[i] = False
            self.open_count -= 1

    def vacate(self, i: int, memory_mb: float, units: int = 1) -> None:
        """A request leaves GPU ``i``: its ``units`` slots and memory are free again."""
        running = self.running_list[i] - units
        self.running_list[i] = running
        self.running[i] = running
        self.reserved_mb[i] -= memory_mb
        free = self.free_list[i] + memory_mb
        self.free_list[i] = free
        self.free_mb[i] = free
        self._reopen(i)

    def add_work(self, i: int, seconds: float) -> None:
        """``seconds`` of expected work placed on GPU ``i``."""
        work = self.work_list[i] + seconds
        self.work_list[i] = work
        self.work_left_s[i] = work

    def take_work(self, i: int, seconds: float) -> None:
        """``seconds`` of expected work left GPU ``i`` (never below zero)."""
        work = max(0.0, self.work_list[i] - seconds)
        self.work_list[i] = work
        self.work_left_s[i] = work

    def set_work(self, i: int, seconds: float) -> None:
        self.work_list[i] = seconds
        self.work_left_s[i] = seconds

    def set_weight(self, i: int, weight: float) -> None:
        """Slow-start weight of GPU ``i`` in (0, 1]."""
        self.weight[i] = weight
        self.version += 1

    def set_down(self, i: int, down: bool) -> None:
        """The router takes GPU ``i`` out of service (True) or back (False)."""
        self.down[i] = down
        old = self.slots_list[i] if self.up_list[i] else 0
        self._set_up(i, bool(self.status_ok[i]) and not down, old)
        self._reopen(i)

    # -- derived views used by strategies ---------------------------------------------

    def memory_used_effective(self) -> np.ndarray:
        """MB in use: the sample plus what the router placed since it was taken."""
        return np.minimum(self.memory_total, self.memory_used + self.pending_mb)

    def utilization_effective(self) -> np.ndarray:
        """Percent busy: the larger of the sample and the router's own slot occupancy."""
        occupancy = 100.0 * np.minimum(1.0, self.running / self.slots)
        return np.maximum(self.utilization, occupancy)

    def available(self) -> np.ndarray:
        """GPUs that may take new work: sampled active and not taken down by the router.
        The array is shared; callers must not modify it."""
        return self._up

    def compatible(
        self, min_cc: int, memory_mb: float, request_type: str, units: int = 1
    ) -> np.ndarray:
        """GPUs that could ever serve a request: compute capability, total memory, type,
        at least ``units`` slots."""
        mask: np.ndarray = (
            (self.compute_capability >= min_cc)
            & (self.memory_total >= memory_mb)
            & ((self.capability_bits & type_bit(request_type)) != 0)
        )
        if units > 1:
            mask &= self.slots >= units
        return mask

    def has_units(self, units: int) -> np.ndarray:
        """GPUs with at least ``units`` free slots."""
        free: np.ndarray = (self.slots - self.running) >= units
        return free
