"""The loss system (``queue.max_size`` 0): admit only what can start at once."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_router.policy import (
    GpuState,
    Placement,
    QueueConfig,
    Reject,
    Request,
    ResourceRequirements,
    Router,
    RouterConfig,
)


def req(rid, mem=1000.0):
    res = ResourceRequirements(memory_mb=mem, expected_duration_ms=1000.0)
    return Request(rid, "u", "m", 3, "inference", res, submitted_at=0.0)


@pytest.mark.parametrize("binding", ["late", "early"])
def test_loss_system_admits_only_what_starts_at_once(binding):
    gpus = [GpuState(gpu_id=f"g{i}", memory_total_mb=10_000.0, slots=1) for i in range(2)]
    cfg = RouterConfig(
        strategy="least-loaded",
        binding=binding,
        queue=QueueConfig(max_size=0),
        quotas_enabled=False,
    )
    r = Router(gpus, cfg, np.random.default_rng(0))
    assert isinstance(r.submit(req("a"), 0.0)[0], Placement)
    assert isinstance(r.submit(req("b"), 0.0)[0], Placement)
    refused, actions = r.submit(req("c"), 0.0)  # both GPUs busy: refused, not queued
    assert isinstance(refused, Reject) and refused.code == "queue_full" and actions == []
    assert r.queue_length == 0
    r.complete("a", 1.0)
    assert isinstance(r.submit(req("d"), 1.0)[0], Placement)  # a slot is free again


def test_a_free_slot_without_the_memory_is_no_room():
    gpus = [GpuState(gpu_id="g0", memory_total_mb=10_000.0, slots=2)]
    cfg = RouterConfig(strategy="least-loaded", queue=QueueConfig(max_size=0), quotas_enabled=False)
    r = Router(gpus, cfg, np.random.default_rng(0))
    assert isinstance(r.submit(req("a", mem=6_000.0), 0.0)[0], Placement)
    refused, _ = r.submit(req("b", mem=6_000.0), 0.0)
    assert isinstance(refused, Reject) and refused.code == "queue_full"
    assert isinstance(r.submit(req("c", mem=3_000.0), 0.0)[0], Placement)
