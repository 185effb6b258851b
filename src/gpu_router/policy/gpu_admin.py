"""GPU administration: monitor samples, failures, maintenance, restarts, ejection.

A GPU is out of service while any reason (``CRASHED``, ``MAINTENANCE``,
``"ejected"``, ``"restart"``) is present in ``out_reasons``.
"""

from __future__ import annotations

from .decisions import Abort, Action
from .router_state import RouterState
from .types import GpuState

#: why a GPU is out of service (any reason present keeps it out)
CRASHED, MAINTENANCE = "crashed", "maintenance"


class GpuAdmin(RouterState):
    """Taking GPUs out of service and bringing them back."""

    def observe(self, state: GpuState, now: float) -> list[Action]:
        """A monitor sample of one GPU; placements after ``state.sampled_at`` stay counted."""
        i = self._index(state.gpu_id)
        old = self.fleet.states[i]
        if (old.memory_total_mb, old.compute_capability, old.capabilities) != (
            state.memory_total_mb,
            state.compute_capability,
            state.capabilities,
        ):
            self._compat.clear()  # what could ever be served changed
        self.fleet.observe(i, state)
        pending = [(t, m) for t, m in self._pending[i] if t > state.sampled_at]
        self._pending[i] = pending
        self.fleet.pending_mb[i] = sum(m for _t, m in pending)
        return self._dispatch(now)

    def gpu_down(self, gpu_id: str, now: float, reason: str = CRASHED) -> list[Action]:
        """Hard failure (crash, critical Xid, uncorrectable ECC, unreachable): stop
        placing on it and re-queue its running requests at the head of their priority."""
        actions = self._take_out(
            self._index(gpu_id), now, CRASHED, requeue_running=True, error=reason
        )
        return actions + self._dispatch(now)

    def gpu_up(self, gpu_id: str, now: float) -> list[Action]:
        """The GPU passed its health checks again."""
        self._bring_back(self._index(gpu_id), CRASHED)
        return self._dispatch(now)

    def maintenance(self, gpu_id: str, now: float, reason: str = "maintenance") -> list[Action]:
        """Drain: no new placements; running requests finish; its queue moves back."""
        return self._take_out(self._index(gpu_id), now, MAINTENANCE, requeue_running=False)

    def restart(self, gpu_id: str, now: float) -> list[Action]:
        """Admin restart: abort and re-queue what runs there, clear maintenance, crash and
        ejection marks; the GPU takes work again at once (health checks may take it out)."""
        i = self._index(gpu_id)
        actions = self._take_out(i, now, "restart", requeue_running=True, error="gpu restart")
        self.out_reasons[i].clear()
        self._ejected.discard(i)
        self.fleet.set_down(i, False)
        return actions + self._dispatch(now)

    def is_out(self, gpu_id: str) -> set[str]:
        """Why a GPU takes no work (empty when it does)."""
        return set(self.out_reasons[self._index(gpu_id)])

    def _take_out(
        self, i: int, now: float, reason: str, *, requeue_running: bool, error: str = ""
    ) -> list[Action]:
        self.out_reasons[i].add(reason)
        self.fleet.set_down(i, True)
        actions: list[Action] = []
        if requeue_running:
            for rid in sorted(self.on_gpu[i]):
                rec = self.records[rid]
                self._release(rec, now)
                actions.append(Abort(rid, self.gpu_id(i), error or reason))
                actions += self._retry(rec, now, error or reason, 0.0)
        if self.early:
            gq = self.gpu_queues[i]
            for rid in list(gq.ordered(now)):
                rec = self.records[rid]
                gq.remove(rid)
                rec.gpu_index = None
                self._requeue_at_head(rec)
            self.fleet.queued[i] = 0
            self.fleet.work_left_s[i] = sum(self.records[r].placed_s for r in self.on_gpu[i])
        return actions

    def _bring_back(self, i: int, reason: str) -> None:
        self.out_reasons[i].discard(reason)
        self.fleet.set_down(i, bool(self.out_reasons[i]))

    def _refresh_weights(self, now: float) -> None:
        for i in sorted(self._ramping):
            w = self.outlier.weight(self.gpu_id(i), now)
            self.fleet.set_weight(i, max(w, 1e-3))
            if w >= 1.0:
                self._ramping.discard(i)
