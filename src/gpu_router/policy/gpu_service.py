"""GPU service state: monitor samples, failures, maintenance, restarts, ejection.

A GPU is out of service while any reason (``CRASHED``, ``MAINTENANCE``,
``EJECTED``, ``RESTART``, ``OVERHEATED``, ``REMOVED``) is present in its
``out_reasons``. Nothing here
dispatches: the Router dispatches after each change. Times in seconds.
"""

from __future__ import annotations

from .decisions import Abort, Action
from .outlier import OutlierDetector
from .router_state import RouterState
from .types import GpuState

#: why a GPU is out of service (any reason present keeps it out)
CRASHED, MAINTENANCE, EJECTED, RESTART = "crashed", "maintenance", "ejected", "restart"
OVERHEATED = "overheated"  # sampled above the router's max_temperature_c: drained
REMOVED = "removed"  # left the fleet at run time (elastic fleet) until it joins again


class GpuService:
    """Takes GPUs out of service and brings them back, over the router's bookkeeping."""

    def __init__(self, state: RouterState, outlier: OutlierDetector) -> None:
        self.state = state
        self.outlier = outlier
        self.fleet = state.fleet
        self._ejected: set[int] = set()
        self._ramping: set[int] = set()  # back from ejection, weight still below 1
        self._maintenance_until: dict[int, float] = {}  # maintenance that ends by itself

    def out(self, i: int) -> set[str]:
        """Why GPU ``i`` takes no work (empty when it does); the live set."""
        return self.state.out_reasons[i]

    def observe(self, i: int, sample: GpuState) -> bool:
        """Take a monitor sample of GPU ``i``; placements after ``sample.sampled_at`` stay
        counted. True when what the GPU could ever serve changed."""
        s = self.state
        old = self.fleet.states[i]
        changed = (old.memory_total_mb, old.compute_capability, old.capabilities) != (
            sample.memory_total_mb,
            sample.compute_capability,
            sample.capabilities,
        )
        self.fleet.observe(i, sample)
        pending = [(t, m) for t, m in s.pending[i] if t > sample.sampled_at]
        s.pending[i] = pending
        self.fleet.pending_mb[i] = sum(m for _t, m in pending)
        return changed

    def check_temperature(self, i: int, sample: GpuState, now: float, max_c: float) -> list[Action]:
        """Above ``max_c`` degrees C GPU ``i`` takes no new work (what runs there
        finishes); at or below it, it is back (unless out for another reason)."""
        hot = sample.temperature_c > max_c
        out = self.state.out_reasons[i]
        if hot and OVERHEATED not in out:
            return self.take_out(i, now, OVERHEATED, requeue_running=False)
        if not hot and OVERHEATED in out:
            self.bring_back(i, OVERHEATED)
        return []

    def take_out(
        self, i: int, now: float, reason: str, *, requeue_running: bool, error: str = ""
    ) -> list[Action]:
        """Mark GPU ``i`` out for ``reason``; abort and re-queue what runs there if asked;
        under early binding its own queue moves back to the central queue."""
        s = self.state
        s.out_reasons[i].add(reason)
        self.fleet.set_down(i, True)
        actions: list[Action] = []
        if requeue_running:
            for rid in sorted(s.on_gpu[i]):
                rec = s.records[rid]
                s.release(rec, now)
                actions.append(Abort(rid, s.gpu_id(i), error or reason))
                actions += s.retry(rec, now, error or reason, 0.0)
        if s.early:
            gq = s.gpu_queues[i]
            for rid in list(gq.ordered(now)):
                rec = s.records[rid]
                gq.remove(rid)
                rec.gpu_index = None
                s.requeue_at_head(rec)
            self.fleet.queued[i] = 0
            self.fleet.set_work(i, sum(s.records[r].placed_s for r in s.on_gpu[i]))
        return actions

    def bring_back(self, i: int, reason: str) -> None:
        """Clear ``reason``; GPU ``i`` is back in service once no reason is left."""
        out = self.state.out_reasons[i]
        out.discard(reason)
        self.fleet.set_down(i, bool(out))

    def maintenance(self, i: int, now: float, duration_s: float | None) -> list[Action]:
        """Drain GPU ``i`` for maintenance; with ``duration_s`` it ends by itself then
        (``end_maintenances``), without it only a restart ends it."""
        if duration_s is None:
            self._maintenance_until.pop(i, None)
        else:
            self._maintenance_until[i] = now + duration_s
        return self.take_out(i, now, MAINTENANCE, requeue_running=False)

    def end_maintenances(self, now: float) -> None:
        """Bring back the GPUs whose maintenance window is over."""
        for i, until in sorted(self._maintenance_until.items()):
            if until <= now:
                del self._maintenance_until[i]
                self.bring_back(i, MAINTENANCE)

    def next_maintenance_end(self) -> float | None:
        """When the next maintenance window ends (None: none is timed)."""
        ends = self._maintenance_until
        return min(ends.values()) if ends else None

    def restart(self, i: int, now: float) -> list[Action]:
        """Abort and re-queue what runs on GPU ``i``, clear every out reason and the
        ejection mark; it takes work again at once (health checks may take it out)."""
        actions = self.take_out(i, now, RESTART, requeue_running=True, error="gpu restart")
        self.state.out_reasons[i].clear()
        self._ejected.discard(i)
        self._maintenance_until.pop(i, None)
        self.fleet.set_down(i, False)
        return actions

    # -- outlier ejection ---------------------------------------------------------

    def record_success(self, i: int, now: float) -> None:
        if self.outlier.tracking():  # (nothing to reset while no GPU has a failure record)
            self.outlier.record_success(self.fleet.gpu_ids[i], now)

    def record_failure(self, i: int, now: float) -> list[Action]:
        """A GPU fault on ``i``; ejecting it drains it (running work finishes)."""
        if not self.outlier.record_failure(self.state.gpu_id(i), now, self.fleet.size):
            return []
        self._ejected.add(i)
        return self.take_out(i, now, EJECTED, requeue_running=False)

    def end_ejections(self, now: float) -> None:
        """Bring back GPUs whose ejection ended, then step slow-start weights."""
        gpu_id = self.state.gpu_id
        for i in sorted(self._ejected):
            if not self.outlier.is_ejected(gpu_id(i), now):
                self._ejected.discard(i)
                self._ramping.add(i)
                self.bring_back(i, EJECTED)
        for i in sorted(self._ramping):
            w = self.outlier.weight(gpu_id(i), now)
            self.fleet.set_weight(i, max(w, 1e-3))
            if w >= 1.0:
                self._ramping.discard(i)

    def timed(self) -> bool:
        """Whether ``next_change`` or ``next_maintenance_end`` may say anything (False:
        no GPU has a failure record and no maintenance is timed)."""
        return bool(self._maintenance_until) or self.outlier.tracking()

    def next_change(self, now: float) -> float | None:
        """When an ejection or slow-start ramp next changes (None: none pending)."""
        return self.outlier.next_change(now)
