"""Callbacks: a request's terminal state POSTed to its ``callback_url``, and each
re-route of its work (``event: rerouted``, best effort).

The body is the status answer in the ALT_LAS envelope; the request's trace id goes in a
``traceparent`` header. Delivery (retries with backoff) is the dispatcher's; the outcome
is journaled as ``callback_state`` (delivered, failed), so a restart resends the pending.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from gpu_router.shim.core.live import LiveRequests
from gpu_router.shim.core.metrics import PromMetrics
from gpu_router.shim.core.status import StatusViews
from gpu_router.shim.store import JournalRecord


class Delivery(Protocol):
    """What sends a callback: ``deliver`` says whether it got a 2xx; ``spawn`` runs a task."""

    async def deliver(self, url: str, body: Any, headers: dict[str, str]) -> bool: ...

    def spawn(self, coro: Any) -> Any: ...


class Callbacks:
    """Sends terminal states to the clients' callback URLs and journals the outcome."""

    def __init__(
        self, views: StatusViews, requests: LiveRequests, delivery: Delivery, prom: PromMetrics
    ) -> None:
        self.views = views
        self.requests = requests
        self.delivery = delivery
        self.prom = prom

    def rerouted(self, rec: JournalRecord, from_gpu: str, to_gpu: str, reason: str) -> None:
        """Tell the callback URL (if any) that the request's work moved: its status with
        ``event: rerouted`` and ``rerouted: {from_gpu, to_gpu, reason}``. Best effort: the
        outcome is not journaled and a restart does not resend it."""
        url = rec.callback_url
        if not url:
            return
        data = self.views.status_data(rec)
        data["event"] = "rerouted"
        data["rerouted"] = {"from_gpu": from_gpu, "to_gpu": to_gpu, "reason": reason}
        body = {"status": "success", "data": data, "error": None, "meta": None}
        headers = {}
        if rec.trace_id:
            headers["traceparent"] = f"00-{rec.trace_id}-{uuid.uuid4().hex[:16]}-01"

        async def run() -> None:
            ok = await self.delivery.deliver(url, body, headers)
            self.prom.child(
                self.prom.callbacks, "rerouted_delivered" if ok else "rerouted_failed"
            ).inc()

        self.delivery.spawn(run())

    def send(self, rec: JournalRecord) -> None:
        """Deliver ``rec``'s state to its callback URL in the background (if it has one)."""
        url = rec.callback_url
        if not url:
            return
        data = self.views.status_data(rec)
        body = {"status": "success", "data": data, "error": None, "meta": None}
        headers = {}
        if rec.trace_id:
            headers["traceparent"] = f"00-{rec.trace_id}-{uuid.uuid4().hex[:16]}-01"

        async def run() -> None:
            ok = await self.delivery.deliver(url, body, headers)
            state = "delivered" if ok else "failed"
            self.prom.child(self.prom.callbacks, state).inc()
            self.requests.change(rec, callback_state=state)

        self.delivery.spawn(run())
