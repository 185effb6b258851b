"""The reference worker: a real `gpu-router worker` process on loopback in CPU mode, the
HTTP validation in process, and the CUDA job loop against a stand-in torch module."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gpu_router.shim.gpu_sources.base import (
    JobNotFound,
    JobRefused,
    JobRunner,
    WorkerUnavailable,
)
from gpu_router.shim.worker.client import WorkerClient
from gpu_router.shim.worker.device import DeviceInfo, WorkerError, detect_device
from gpu_router.shim.worker.jobs import Worker
from gpu_router.shim.worker.loops import Job, run_cpu, run_cuda
from gpu_router.shim.worker.server import create_app

from .worker_proc import free_port
from .worker_proc import worker_process as run_worker

pytestmark = pytest.mark.timeout(60)

CPU = DeviceInfo("cpu", 0, "test-cpu")


@pytest.fixture(scope="module")
def worker_process() -> Iterator[str]:
    with run_worker("--max-jobs", "4") as url:
        yield url


async def wait_terminal(w: JobRunner, job_id: str, limit: float = 10.0) -> dict:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        st = await w.status(job_id)
        if st["state"] != "running":
            return st
        await asyncio.sleep(0.02)
    raise AssertionError(f"{job_id} did not finish")


def test_process_health(worker_process: str) -> None:
    h = httpx.get(f"{worker_process}/health").json()
    assert h["status"] == "ok" and h["gpu"] == 0 and h["mode"] == "cpu"
    assert h["device"] == "cpu" and h["device_name"] and h["max_jobs"] == 4


def test_process_submit_poll_complete(worker_process: str) -> None:
    async def go() -> tuple[dict, dict]:
        w = WorkerClient(worker_process)
        assert isinstance(w, JobRunner)
        try:
            j = await w.submit("req-1", {"matrix_size": 64}, 200, 512)
            mid = await w.status(j)
            done = await wait_terminal(w, j)
            return mid, done
        finally:
            await w.aclose()

    mid, done = asyncio.run(go())
    assert mid["state"] == "running" and 0 <= mid["progress"] < 1
    assert done["state"] == "completed" and done["progress"] == 1.0 and done["error"] is None
    r = done["result"]
    assert r["device"] == "cpu" and r["mode"] == "cpu" and r["gpu"] == 0
    assert r["matrix_size"] == 64 and r["dtype"] == "float32" and r["iterations"] >= 1
    assert 200 <= r["wall_time_ms"] < 1500  # bounded by the expected duration


def test_process_iterations_cancel_and_idempotent_post(worker_process: str) -> None:
    async def go() -> tuple:
        w = WorkerClient(worker_process)
        try:
            it = await w.submit("req-it", {"matrix_size": 32, "iterations": 5}, 0, 0)
            long = await w.submit("req-long", {}, 60_000, 0)
            again = await w.submit("req-long", {}, 60_000, 0)
            await asyncio.sleep(0.1)
            await w.cancel(long)
            await w.cancel(long)  # idempotent
            cancelled = await w.status(long)
            it_done = await wait_terminal(w, it)
            with pytest.raises(JobNotFound):
                await w.status("nope")
            with pytest.raises(JobNotFound):
                await w.cancel("nope")
            return long, again, cancelled, it_done
        finally:
            await w.aclose()

    long, again, cancelled, it_done = asyncio.run(go())
    assert again == long
    assert cancelled["state"] == "cancelled" and cancelled["result"] is None
    assert it_done["state"] == "completed" and it_done["result"]["iterations"] == 5


def test_unreachable_worker_is_worker_unavailable() -> None:
    async def go() -> None:
        w = WorkerClient(f"http://127.0.0.1:{free_port()}", timeout_s=1)
        try:
            await w.submit("r", {}, 1, 0)
        finally:
            await w.aclose()

    with pytest.raises(WorkerUnavailable):
        asyncio.run(go())


@contextlib.asynccontextmanager
async def in_process(worker: Worker) -> Any:
    """The app with its lifespan, called through httpx's ASGI transport (no sockets)."""
    app = create_app(worker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            yield client


def test_http_validation_in_process() -> None:
    async def go() -> None:
        async with in_process(Worker(CPU, max_jobs=1)) as client:
            bad = [
                (b"{", 400),
                (b"[]", 422),
                (json.dumps({"payload": {}}).encode(), 422),
                (json.dumps({"request_id": "r", "expected_duration_ms": -1}).encode(), 422),
                (json.dumps({"request_id": "r", "memory_mb": "x"}).encode(), 422),
                (json.dumps({"request_id": "r", "extra": 1}).encode(), 422),
                (json.dumps({"request_id": "r", "payload": {"iterations": 0}}).encode(), 422),
                (b"{" + b" " * (1 << 20) + b"}", 413),
            ]
            for body, code in bad:
                r = await client.post(
                    "/jobs", content=body, headers={"content-type": "application/json"}
                )
                assert r.status_code == code, (body[:60], r.text)
                assert "error" in r.json()
            r = await client.post("/jobs", json={"request_id": "a", "expected_duration_ms": 5000})
            assert r.status_code == 202
            busy = await client.post("/jobs", json={"request_id": "b", "expected_duration_ms": 1})
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            same = await client.post(
                "/jobs", json={"request_id": "a", "expected_duration_ms": 5000}
            )
            assert same.status_code == 200 and same.json()["job_id"] == r.json()["job_id"]
            assert same.json()["existing"] is True
            assert (await client.get("/jobs/zzz")).status_code == 404
            gone = await client.delete(f"/jobs/{r.json()['job_id']}")
            assert gone.json()["state"] == "cancelled"

    asyncio.run(go())


def test_failing_job_reports_error_and_a_retry_runs_again() -> None:
    calls = []

    def runner(job: Job, device: DeviceInfo, limit: float) -> dict[str, Any]:
        calls.append(job.request_id)
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return {"ok": True}

    async def go() -> tuple[dict, str, str]:
        async with in_process(Worker(CPU, runner=runner)) as client:
            first = (await client.post("/jobs", json={"request_id": "r"})).json()["job_id"]
            for _ in range(200):
                st = (await client.get(f"/jobs/{first}")).json()
                if st["state"] != "running":
                    break
                await asyncio.sleep(0.01)
            second = (await client.post("/jobs", json={"request_id": "r"})).json()["job_id"]
            return st, first, second

    st, first, second = asyncio.run(go())
    assert st["state"] == "failed" and "illegal memory access" in st["error"]
    assert second != first  # a failed job is re-run, not returned again


def test_cpu_runner_bounds() -> None:
    job = Job("j", "r", {"matrix_size": 16}, 50.0, 0.0)
    t0 = time.perf_counter()
    res = run_cpu(job, CPU, 10.0)
    assert 0.05 <= time.perf_counter() - t0 < 1.0
    assert res["iterations"] >= 1 and res["device"] == "cpu"
    capped = run_cpu(Job("j", "r", {"matrix_size": 16}, 60_000.0, 0.0), CPU, 0.05)
    assert capped["wall_time_ms"] < 1000  # max_duration_s caps a long expected duration
    once = run_cpu(Job("j", "r", None, 0.0, 0.0), CPU, 10.0)
    assert once["iterations"] == 1


def test_sleep_job_takes_its_sleep_ms_not_the_declared_duration() -> None:
    t0 = time.perf_counter(), time.thread_time()
    res = run_cpu(Job("j", "r", {"sleep_ms": 120}, 5_000.0, 0.0), CPU, 10.0)
    wall, cpu = time.perf_counter() - t0[0], time.thread_time() - t0[1]
    assert 0.12 <= wall < 1.0 and res["slept_ms"] == 120.0 and res["dtype"] == "none"
    assert cpu < 0.05  # sleeping, not computing
    capped = run_cpu(Job("j", "r", {"sleep_ms": 60_000}, 0.0, 0.0), CPU, 0.05)
    assert capped["slept_ms"] == 50.0
    cancelled = Job("j", "r", {"sleep_ms": 60_000}, 0.0, 0.0)
    cancelled.cancel.set()
    assert run_cpu(cancelled, CPU, 10.0)["wall_time_ms"] < 100
    with pytest.raises(ValueError, match="sleep_ms"):
        run_cpu(Job("j", "r", {"sleep_ms": "long"}, 0.0, 0.0), CPU, 10.0)


# -- the CUDA path against a stand-in torch -------------------------------------------------


class FakeTorch(types.ModuleType):
    """Just enough of torch for detect_device, warm-up and run_cuda; records what ran."""

    bfloat16, uint8 = "bfloat16", "uint8"
    __version__ = "2.11.0+fake"

    def __init__(self, gpus: int = 2) -> None:
        super().__init__("torch")
        self.log: list[Any] = []
        outer = self

        class Stream:
            def __init__(self, device: Any) -> None:
                outer.log.append(("stream", device))

            def synchronize(self) -> None:
                outer.log.append("sync")

        @contextlib.contextmanager
        def ctx(*a: Any, **k: Any) -> Iterator[None]:
            yield

        self.cuda = types.SimpleNamespace(
            is_available=lambda: gpus > 0,
            device_count=lambda: gpus,
            get_device_name=lambda i: f"NVIDIA H100 80GB HBM3 #{i}",
            device=ctx,
            stream=ctx,
            Stream=Stream,
            empty_cache=lambda: outer.log.append("empty_cache"),
        )

    def device(self, kind: str, index: int) -> str:
        return f"{kind}:{index}"

    def empty(self, *shape: Any, dtype: Any, device: Any) -> tuple:
        self.log.append(("empty", shape, dtype, device))
        return shape

    def randn(self, *shape: Any, dtype: Any, device: Any) -> tuple:
        self.log.append(("randn", shape, dtype, device))
        return shape

    def matmul(self, a: Any, b: Any, out: Any) -> None:
        self.log.append("matmul")


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> FakeTorch:
    torch = FakeTorch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    return torch


def test_detect_device_with_and_without_cuda(
    fake_torch: FakeTorch, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = detect_device(1)
    assert (d.mode, d.index, d.label) == ("cuda", 1, "cuda:1")
    assert d.name == "NVIDIA H100 80GB HBM3 #1" and d.torch_version == "2.11.0+fake"
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert detect_device(1, "cpu").mode == "cpu"
    assert detect_device(5).mode == "cpu"  # auto falls back
    with pytest.raises(WorkerError, match="sees 2"):
        detect_device(5, "cuda")
    monkeypatch.setitem(sys.modules, "torch", FakeTorch(gpus=0))
    with pytest.raises(WorkerError, match="CUDA is not available"):
        detect_device(0, "cuda")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(WorkerError, match="not installed"):
        detect_device(0, "cuda")
    assert detect_device(0).mode == "cpu"
    with pytest.raises(WorkerError, match="mode"):
        detect_device(0, "tpu")


def test_run_cuda_reserves_memory_loops_and_syncs(fake_torch: FakeTorch) -> None:
    dev = DeviceInfo("cuda", 1, "H100")
    job = Job("j", "r", {"matrix_size": 1024, "iterations": 10}, 0.0, 2048.0)
    res = run_cuda(job, dev, 10.0)
    log = fake_torch.log
    assert log[0] == ("stream", "cuda:1")
    operands_mb = 3 * 1024 * 1024 * 2 / 2**20
    assert log[1] == ("empty", (int((2048 - operands_mb) * 2**20),), "uint8", "cuda:1")
    assert ("randn", (1024, 1024), "bfloat16", "cuda:1") in log
    assert log.count("matmul") == 10 == res["iterations"]
    assert log[-1] == "empty_cache" and log[-2] == "sync"
    assert res["device"] == "cuda:1" and res["mode"] == "cuda" and res["dtype"] == "bfloat16"
    assert res["memory_reserved_mb"] == pytest.approx(2048 - operands_mb)
    fake_torch.log.clear()
    job = Job("j", "r", {"reserve_memory": False}, 30.0, 2048.0)  # duration-bounded
    res = run_cuda(job, dev, 10.0)
    assert not [e for e in fake_torch.log if isinstance(e, tuple) and "uint8" in e]
    assert res["matrix_size"] == 8192 and res["wall_time_ms"] >= 30.0
    assert res["iterations"] == fake_torch.log.count("matmul") >= 1


def test_run_cuda_stops_on_cancel(fake_torch: FakeTorch) -> None:
    job = Job("j", "r", {}, 60_000.0, 0.0)
    job.cancel.set()
    res = run_cuda(job, DeviceInfo("cuda", 0, "H100"), 10.0)
    assert res["iterations"] == 0 and fake_torch.log.count("matmul") == 0


def test_cli_refuses_bad_arguments(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from gpu_router.cli import main

    assert main(["worker", "--gpu", "0", "--port", "70000", "--mode", "cpu"]) == 2
    assert "--port=70000" in capsys.readouterr().err
    assert main(["worker", "--gpu", "0", "--max-duration-s", "0", "--mode", "cpu"]) == 2
    assert main(["worker", "--gpu", "0", "--job-prefix", "", "--mode", "cpu"]) == 2
    assert main(["worker", "--gpu", "0", "--job-prefix", "a\nb", "--mode", "cpu"]) == 2
    assert "--job-prefix" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["worker", "--gpu", "0", "--mode", "cuda"]) == 2
    assert "PyTorch is not installed" in capsys.readouterr().err
    assert main(["worker", "--gpu", "-1", "--mode", "cpu"]) == 2


def test_calls_of_an_older_epoch_than_the_newest_seen_are_refused() -> None:
    async def go() -> None:
        async with in_process(Worker(CPU, max_jobs=4)) as http:
            new = WorkerClient("http://w", http, epoch=3)
            old = WorkerClient("http://w", http, epoch=2)
            unfenced = WorkerClient("http://w", http)  # one router: no epoch
            job = await new.submit("r1", {}, 1, 0, job_id="r1.1")
            with pytest.raises(JobRefused, match="fenced: epoch 2 is older than 3"):
                await old.submit("r2", {}, 1, 0, job_id="r2.1")
            with pytest.raises(JobRefused, match="fenced"):
                await old.cancel(job)
            with pytest.raises(JobRefused, match="fenced"):
                await old.ack([job])
            assert (await unfenced.status(job))["job_id"] == job  # reads are not fenced
            await WorkerClient("http://w", http, epoch=4).submit("r3", {}, 1, 0, job_id="r3.1")
            with pytest.raises(JobRefused, match="older than 4"):
                await new.submit("r4", {}, 1, 0, job_id="r4.1")
            # a new leader's recovery lists what the worker holds: from then on the
            # deposed leader cannot start a job the new one would not know of
            listed = WorkerClient("http://w", http, epoch=5)
            assert {j["job_id"] for j in await listed.jobs()} >= {job, "r3.1"}
            four = WorkerClient("http://w", http, epoch=4)
            with pytest.raises(JobRefused, match="older than 5"):
                await four.submit("r5", {}, 1, 0, job_id="r5.1")
            assert await four.jobs()  # a listing of an older epoch is answered
            assert "r5.1" not in {j["job_id"] for j in await listed.jobs()}

    asyncio.run(go())


def test_a_start_whose_body_arrives_after_a_newer_leaders_listing_is_refused() -> None:
    """The epoch is checked again once the body is in: a deposed leader's start whose
    headers came before the new leader's listing and whose body came after it (a delayed
    segment) creates no job the new leader would not know of."""

    async def go() -> None:
        async with in_process(Worker(CPU, max_jobs=4)) as http:
            listed = asyncio.Event()

            async def late_body():  # (httpx reads a streamed body as the app asks for it)
                yield b'{"request_id": "late", '
                await listed.wait()
                yield b'"job_id": "late.1", "expected_duration_ms": 1, "memory_mb": 0}'

            headers = {"x-router-epoch": "5", "content-type": "application/json"}
            start = asyncio.ensure_future(http.post("/jobs", content=late_body(), headers=headers))
            await asyncio.sleep(0.05)  # the headers are in, the body is not
            newer = WorkerClient("http://w", http, epoch=6)
            assert await newer.jobs() == []
            listed.set()
            r = await start
            assert r.status_code == 409 and "older than 6" in r.text, r.text
            assert await newer.jobs() == []  # no job the new leader does not know of

    asyncio.run(go())
