"""Metric push to the Monitoring System (integration plan, seed 000, 2.3.2) and the
shipping counters.

With ``metrics.url`` set, every ``metrics.interval_s`` a snapshot of the app's Prometheus
registry (what ``/metrics`` shows) is handed to a :class:`~gpu_router.shim.shipping.Shipper`
for ``{url}/metrics``: one JSON object per snapshot, ``{"source", "timestamp", "metrics":
[{"name", "type", "labels", "value"}, ...]}``; a POST carries a JSON list of snapshots.
The snapshot is taken off the event loop. :class:`ShippingCounters` exports
``gpu_router_shipping_sent_total{kind}`` and ``gpu_router_shipping_dropped_total{kind}``
(kind: ``logs``, ``metrics``) from the shippers it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from gpu_router.shim.config import MetricsSection
from gpu_router.shim.core.clock import iso
from gpu_router.shim.shipping import Shipper

SOURCE = "gpu-request-router"


class ShippingCounters:
    """A Prometheus collector: items sent and dropped by each shipper, by kind."""

    def __init__(self) -> None:
        self.shippers: list[Shipper] = []

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "gpu_router_shipping_sent",
            "Items (log records, metric snapshots) the receiver accepted",
            labels=["kind"],
        )
        dropped = CounterMetricFamily(
            "gpu_router_shipping_dropped",
            "Items lost: the shipping buffer was full, or every try of their batch failed",
            labels=["kind"],
        )
        for s in self.shippers:
            sent.add_metric([s.kind], s.sent)
            dropped.add_metric([s.kind], s.dropped)
        yield sent
        yield dropped


def snapshot(registry: CollectorRegistry, wall_s: float) -> str:
    """Every sample of ``registry`` as one JSON text (non-finite values as null)."""
    samples = [
        {
            "name": s.name,
            "type": family.type,
            "labels": s.labels,
            "value": s.value if math.isfinite(s.value) else None,
        }
        for family in registry.collect()
        for s in family.samples
    ]
    return json.dumps({"source": SOURCE, "timestamp": iso(wall_s), "metrics": samples})


@contextlib.asynccontextmanager
async def metrics_push(
    config: MetricsSection,
    registry: CollectorRegistry,
    counters: ShippingCounters,
    wall: Callable[[], float],
) -> AsyncIterator[Shipper | None]:
    """Push snapshots while the block runs (nothing without ``config.url``); then the
    shipper sends what it holds, for a few seconds at most."""
    if config.url is None:
        yield None
        return
    shipper = Shipper(config.url.rstrip("/") + "/metrics", "metrics", config.shipping)
    counters.shippers.append(shipper)

    async def loop() -> None:
        while True:
            await asyncio.sleep(config.interval_s)
            shipper.put(await asyncio.to_thread(snapshot, registry, wall()))

    task = asyncio.create_task(loop(), name="metrics-push")
    try:
        yield shipper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(shipper.close)
        counters.shippers.remove(shipper)
