"""The reference worker's resident models: loads with a calibrated delay, LRU by
memory, reported in health and job status, and heard by the dispatcher."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import pytest

from gpu_router.shim.config import DispatchSection, RequestRouterSection
from gpu_router.shim.core.dispatcher import Dispatcher, JobSpec
from gpu_router.shim.worker.client import WorkerClient
from gpu_router.shim.worker.models import ModelHolder

from .test_client import NoSource, Recorder
from .test_server import wait_terminal
from .worker_proc import worker_process

pytestmark = pytest.mark.timeout(60)


def test_holder_loads_once_and_evicts_least_recently_used() -> None:
    h = ModelHolder(10_000.0, 0.05)
    t0 = time.monotonic()
    assert h.ensure("a", 4000.0) == 0.05 and time.monotonic() - t0 >= 0.05
    assert h.ensure("a", 4000.0) == 0.0  # held: no wait
    h.ensure("b", 4000.0)
    h.ensure("a", 4000.0)  # b is now the oldest
    h.ensure("c", 4000.0)
    assert [m["id"] for m in h.held()] == ["a", "c"] and h.used_mb() == 8000.0
    h.ensure("d", 1000.0, evict=["a"])  # the router's eviction comes first
    assert [m["id"] for m in h.held()] == ["c", "d"] and h.loads == 4
    h.ensure("huge", 20_000.0)
    assert "huge" not in [m["id"] for m in h.held()]


def test_a_cancel_ends_the_load_and_nothing_is_kept() -> None:
    h = ModelHolder(10_000.0, 30.0)
    cancel = threading.Event()
    cancel.set()
    assert h.ensure("a", 1.0, cancel=cancel) == 0.0 and h.held() == []


def test_bad_holder_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity_mb"):
        ModelHolder(0.0, 1.0)


def test_worker_process_loads_reports_and_evicts() -> None:
    async def go(url: str) -> list[tuple[float | None, list[str]]]:
        w = WorkerClient(url)
        seen = []
        try:
            for k, model in enumerate(("sd", "sd", "xl")):
                m = {"id": model, "memory_mb": 6000, "evict": []}
                j = await w.submit(f"r{k}", {"matrix_size": 16, "iterations": 1}, 0, 0, model=m)
                st = await wait_terminal(w, j)
                assert st["state"] == "completed"
                health = httpx.get(f"{url}/health").json()
                seen.append((st.get("model_load_s"), health["models"]))
        finally:
            await w.aclose()
        return seen

    with worker_process("--model-load-s", "0.2", "--model-memory-mb", "10000") as url:
        seen = asyncio.run(go(url))
        bad = httpx.post(f"{url}/jobs", json={"request_id": "x", "model": {"id": 3}})
    assert seen == [(0.2, ["sd"]), (0.0, ["sd"]), (0.2, ["xl"])]  # 12 GB do not fit in 10
    assert bad.status_code == 422 and "model" in bad.json()["error"]


def test_the_dispatcher_hears_the_load() -> None:
    async def go(url: str) -> list[tuple]:
        rec = Recorder()
        async with httpx.AsyncClient() as http:
            d = Dispatcher(
                NoSource(),  # type: ignore[arg-type]
                dispatch=DispatchSection(poll_interval=0.02, max_poll_interval=0.05),
                calls=RequestRouterSection(max_retries=0, request_timeout=5.0),
                http=http,
                monotonic=time.monotonic,
                logger=logging.getLogger("test"),
                worker_urls={"gpu-0": url},
            )
            d.connect(rec)
            model = {"id": "sd", "memory_mb": 6000.0, "evict": []}
            spec = JobSpec("req-m", {"iterations": 1, "matrix_size": 16}, 0, 0, model=model)
            d.start("gpu-0", 1, spec)
            await asyncio.wait_for(rec.ended.wait(), 10)
            await d.aclose()
        return rec.events

    with worker_process("--model-load-s", "0.1") as url:
        events = asyncio.run(go(url))
    kinds = [e[0] for e in events if e[0] != "progress"]
    assert kinds == ["started", "loaded", "completed"]
    assert ("loaded", "req-m", 1, 0.1) in events
