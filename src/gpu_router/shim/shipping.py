"""Ship JSON items to an HTTP receiver in batches, from a background thread.

:class:`Shipper` holds items (JSON texts) in a bounded buffer; its thread POSTs them as one
JSON list per batch to its URL, retrying a failed POST (connection error, timeout, 429,
5xx) with exponential backoff, then dropping the batch. :meth:`Shipper.put` never waits:
a full buffer drops the item. ``sent`` and ``dropped`` count items (the
``gpu_router_shipping_*_total{kind}`` counters read them).
"""

from __future__ import annotations

import queue
import threading
import time

import httpx

from gpu_router.shim.config import ShippingOptions


class Shipper:
    """Batches ``put`` items to ``url`` (see the module docstring)."""

    def __init__(self, url: str, kind: str, options: ShippingOptions | None = None) -> None:
        self.url = url
        self.kind = kind
        self.options = o = options or ShippingOptions()
        self.sent = 0  # items the receiver accepted (2xx)
        self.dropped = 0  # items lost: buffer full, or the batch's tries all failed
        self.failed_posts = 0  # POSTs that failed (each retry counts)
        self._queue: queue.Queue[str] = queue.Queue(o.buffer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ship-{kind}", daemon=True)
        self._thread.start()

    def put(self, item: str) -> bool:
        """Buffer one JSON text; False (and counted as dropped) when the buffer is full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _next_batch(self) -> list[str]:
        """Up to ``batch`` items, waiting at most ``flush_interval_s`` after the first."""
        o = self.options
        try:
            items = [self._queue.get(timeout=o.flush_interval_s)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + o.flush_interval_s
        while len(items) < o.batch:
            left = deadline - time.monotonic()
            try:
                items.append(
                    self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return items

    def _post(self, client: httpx.Client, items: list[str]) -> None:
        o = self.options
        body = "[" + ",".join(items) + "]"
        headers = {"content-type": "application/json"}
        for attempt in range(o.retries + 1):
            try:
                r = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError:
                pass
            else:
                if r.is_success:
                    self.sent += len(items)
                    return
                if r.status_code < 500 and r.status_code != 429:
                    break  # the receiver refuses these items: retrying will not help
            self.failed_posts += 1
            if attempt == o.retries or self._stop.is_set():
                break
            self._stop.wait(min(o.max_backoff_s, o.backoff_s * 2**attempt))
        self.dropped += len(items)

    def _run(self) -> None:
        with httpx.Client(timeout=self.options.timeout_s, trust_env=False) as client:
            while not (self._stop.is_set() and self._queue.empty()):
                items = self._next_batch()
                if items:
                    self._post(client, items)
                    for _ in items:
                        self._queue.task_done()

    def drain(self, timeout_s: float = 2.0) -> bool:
        """Wait (at most ``timeout_s``) until every item put so far is sent or dropped;
        whether that happened. The thread keeps running."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and self._thread.is_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 3.0) -> None:
        """Send what is buffered (no retry waits from now on), for at most ``timeout_s``."""
        self._stop.set()
        self._thread.join(timeout_s)
