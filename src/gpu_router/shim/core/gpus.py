"""What the service knows of each GPU beyond the Router: why it took one out, since when
one is in service, and the maintenance windows admins opened.

The Router's own view (:meth:`Router.gpu`) says whether it places work on a GPU; this
adds the GPUs the service took out itself (a hard signal, a worker that stopped
answering) until a health probe brings them back. Times are monotonic seconds.
"""

from __future__ import annotations

from typing import Any

from gpu_router.policy import Router


class GpuBook:
    """GPUs taken out by the service, their time in service, and maintenance windows."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.down: dict[str, tuple[str, float]] = {}  # gpu_id -> (why, since) taken out by us
        self.since: dict[str, float] = {}  # gpu_id -> when it last came into service
        self.maintenance: dict[str, dict[str, Any]] = {}  # gpu_id -> the admin's window

    def status(self, router: Router, gpu_id: str) -> str:
        """The seed's GPU status: active, inactive, maintenance or error."""
        view = router.gpu(gpu_id)
        if view.status != "maintenance" and gpu_id in self.down:
            return "error"
        return view.status

    def uptime(self, gpu_id: str, now: float) -> float:
        """Seconds since the GPU last came into service (s)."""
        return max(0.0, now - self.since.get(gpu_id, self.started))

    def back(self, gpu_id: str, now: float) -> None:
        """The GPU is in service again from ``now``."""
        self.down.pop(gpu_id, None)
        self.since[gpu_id] = now
