"""The one worker client: against a real worker process on loopback (job ids that need
percent-encoding, and the dispatcher using it end to end), and its error mapping,
envelope, headers and pooling against an in-process mock transport."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gpu_router.shim.config import DispatchSection, RequestRouterSection
from gpu_router.shim.core.dispatcher import Dispatcher, JobEvents, JobSpec
from gpu_router.shim.core.execution import Execution
from gpu_router.shim.gpu_sources.base import (
    JobNotFound,
    JobRefused,
    JobRunner,
    WorkerCallError,
    WorkerUnavailable,
)
from gpu_router.shim.worker.client import LeaseLost, WorkerClient, job_path

from .worker_proc import worker_process

pytestmark = pytest.mark.timeout(60)

ODD = "a/b c?d"  # a slash, a space and a question mark: each must be percent-encoded


@pytest.fixture(scope="module")
def odd_worker() -> Iterator[str]:
    """A real worker whose job ids all start with ``ODD``."""
    with worker_process("--max-jobs", "4", "--job-prefix", ODD + "-") as url:
        yield url


async def _terminal(w: WorkerClient, job_id: str, limit: float = 10.0) -> dict[str, Any]:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        st = await w.status(job_id)
        if st["state"] != "running":
            return dict(st)
        await asyncio.sleep(0.02)
    raise AssertionError(f"{job_id} did not finish")


def test_job_path_quotes_every_reserved_character() -> None:
    assert job_path(ODD) == "/jobs/a%2Fb%20c%3Fd"
    assert job_path("j1-42") == "/jobs/j1-42"


def test_odd_job_id_round_trips_against_a_real_worker(odd_worker: str) -> None:
    async def go() -> tuple[str, dict, dict, dict, int]:
        async with httpx.AsyncClient() as http:
            w = WorkerClient(odd_worker, http)
            assert isinstance(w, JobRunner)
            long = await w.submit("req-long", {}, 60_000, 0)
            running = await w.status(long)
            await w.cancel(long)
            cancelled = await w.status(long)
            short = await w.submit("req-short", {"matrix_size": 16, "iterations": 3}, 0, 0)
            done = await _terminal(w, short)
            # the id as it is, unquoted, names another path: the worker knows no such job
            raw = await http.get(f"{odd_worker}/jobs/{long}")
            await w.aclose()  # a shared pool stays open
            assert not http.is_closed
            return long, dict(running), dict(cancelled), done, raw.status_code

    long, running, cancelled, done, raw_code = asyncio.run(go())
    assert long.startswith(ODD + "-1-")
    assert running["job_id"] == long and running["request_id"] == "req-long"
    assert running["state"] == "running"
    assert cancelled["job_id"] == long and cancelled["state"] == "cancelled"
    assert done["job_id"].startswith(ODD + "-2-") and done["state"] == "completed"
    assert done["result"]["iterations"] == 3
    assert raw_code == 404


class Recorder:
    """JobEvents that record what they hear."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.ended = asyncio.Event()

    def job_started(self, request_id: str, attempt: int, gpu_id: str, job_id: str) -> None:
        self.events.append(("started", request_id, attempt, gpu_id, job_id))

    def job_progress(self, request_id: str, attempt: int, progress: float) -> None:
        self.events.append(("progress", request_id, attempt, progress))

    def job_completed(self, request_id: str, attempt: int, result: Any) -> None:
        self.events.append(("completed", request_id, attempt, result))
        self.ended.set()

    def job_failed(self, request_id: str, attempt: int, error: str, gpu_fault: bool) -> None:
        self.events.append(("failed", request_id, attempt, error, gpu_fault))
        self.ended.set()

    def worker_down(self, gpu_id: str, reason: str) -> None:
        self.events.append(("down", gpu_id, reason))
        self.ended.set()

    def model_loaded(self, request_id: str, attempt: int, seconds: float) -> None:
        self.events.append(("loaded", request_id, attempt, seconds))


class NoSource:
    """A GpuSource stand-in: every GPU's worker is configured by URL."""

    period_s = 1.0

    def worker_url(self, gpu_id: str) -> str | None:
        return None

    def virtual_worker(self, gpu_id: str) -> Any:
        raise AssertionError("no virtual workers here")


def test_the_service_implements_job_events() -> None:
    assert isinstance(Recorder(), JobEvents)
    assert issubclass(Execution, JobEvents)  # the service's sink of job events


def test_dispatcher_runs_an_odd_job_id_through_the_one_client(odd_worker: str) -> None:
    async def go() -> tuple[Recorder, dict | None, bool, bool]:
        rec = Recorder()
        async with httpx.AsyncClient() as http:
            d = Dispatcher(
                NoSource(),  # type: ignore[arg-type]
                dispatch=DispatchSection(poll_interval=0.02, max_poll_interval=0.05),
                calls=RequestRouterSection(max_retries=0, request_timeout=5.0),
                http=http,
                monotonic=time.monotonic,
                logger=logging.getLogger("test"),
                worker_urls={"gpu-0": odd_worker, "gpu-x": "http://127.0.0.1:9"},
            )
            d.connect(rec)
            spec = JobSpec("req-d", {"matrix_size": 16, "iterations": 2}, 0, 0, "00-" + "1" * 32)
            d.start("gpu-0", 1, spec)
            await asyncio.wait_for(rec.ended.wait(), 10)
            job_id = rec.events[0][4]
            state = await d.job_state("gpu-0", job_id)
            await d.cancel_job("gpu-0", job_id)  # finished: stays completed, no error
            up, down = await d.probe("gpu-0"), await d.probe("gpu-x")
            await d.aclose()
            return rec, state, up, down

    rec, state, up, down = asyncio.run(go())
    started, *_, end = rec.events
    assert started[:4] == ("started", "req-d", 1, "gpu-0") and started[4].startswith(ODD)
    assert end[:3] == ("completed", "req-d", 1) and end[3]["iterations"] == 2
    assert state is not None and state["state"] == "completed"
    assert state["job_id"] == started[4]
    assert up is True and down is False


# -- error mapping, envelope, headers, against a mock transport (no sockets) -------------


def mocked(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_errors_are_one_type_saying_whose_fault() -> None:
    answers = {
        "/jobs/gone": httpx.Response(404, json={"error": "no such job"}),
        "/jobs/bad": httpx.Response(422, json={"error": "memory_mb: bad"}),
        "/jobs/sick": httpx.Response(503, text="busy"),
        "/jobs/html": httpx.Response(200, text="<html>"),
        "/jobs/nostate": httpx.Response(200, json={"job_id": "nostate"}),
    }

    async def go() -> dict[str, WorkerCallError]:
        seen: dict[str, WorkerCallError] = {}
        async with mocked(lambda req: answers[req.url.path]) as http:
            w = WorkerClient("http://w", http)
            for name in ("gone", "bad", "sick", "html", "nostate"):
                with pytest.raises(WorkerCallError) as info:
                    await w.status(name)
                seen[name] = info.value
        return seen

    seen = asyncio.run(go())
    assert type(seen["gone"]) is JobNotFound and seen["gone"].worker_fault
    assert seen["gone"].status == 404 and "no such job" in str(seen["gone"])
    assert type(seen["bad"]) is JobRefused and not seen["bad"].worker_fault
    assert seen["bad"].status == 422 and "memory_mb: bad" in str(seen["bad"])
    for name in ("sick", "html", "nostate"):
        assert type(seen[name]) is WorkerUnavailable and seen[name].worker_fault, name
    assert seen["sick"].status == 503


def test_envelope_trace_header_quoting_and_typed_status() -> None:
    requests: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        requests.append(req)
        if req.method == "POST":
            return httpx.Response(202, json={"status": "success", "data": {"job_id": ODD}})
        if req.url.path == "/health":
            return httpx.Response(200, json={"status": "ok", "gpu": 3})
        body = {"job_id": ODD, "request_id": "r", "state": "running", "progress": 7}
        return httpx.Response(200, json=body)

    async def go() -> tuple[str, dict, dict, bool]:
        async with mocked(handler) as http:
            w = WorkerClient("http://w/", http, traceparent="00-abc-def-01")
            job_id = await w.submit("r", {"x": 1}, 10.0, 64.0)
            st = await w.status(job_id)
            await w.cancel(job_id)
            return job_id, dict(st), dict(await w.health()), await w.healthy()

    job_id, st, health, healthy = asyncio.run(go())
    assert job_id == ODD  # read through the envelope
    post, get, delete, *_ = requests
    assert post.url.raw_path == b"/jobs"
    assert post.read() == (
        b'{"request_id":"r","payload":{"x":1},"expected_duration_ms":10.0,"memory_mb":64.0}'
    )
    assert get.url.raw_path == delete.url.raw_path == b"/jobs/a%2Fb%20c%3Fd"
    assert delete.method == "DELETE"
    assert all(r.headers["traceparent"] == "00-abc-def-01" for r in (post, get, delete))
    assert st == {
        "job_id": ODD,
        "request_id": "r",
        "state": "running",
        "progress": 0.0,  # out of [0, 1]: read as 0
        "result": None,
        "error": None,
    }
    assert health == {"status": "ok", "gpu": 3} and healthy


def test_health_while_starting_and_unreachable() -> None:
    async def go() -> tuple[bool, bool]:
        async with mocked(lambda req: httpx.Response(503, json={"status": "starting"})) as h:
            w = WorkerClient("http://w", h)
            with pytest.raises(WorkerUnavailable):
                await w.health()
            starting = await w.healthy()

        def refuse(req: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=req)

        async with mocked(refuse) as h:
            w = WorkerClient("http://w", h)
            with pytest.raises(WorkerUnavailable) as info:
                await w.submit("r", {}, 1, 0)
            assert info.value.status is None and info.value.worker_fault
            return starting, await w.healthy()

    assert asyncio.run(go()) == (False, False)


def test_dispatcher_reports_refused_jobs_and_down_workers() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.host)
        if req.url.host == "refuses":
            return httpx.Response(422, json={"error": "payload: bad"})
        return httpx.Response(502)

    async def go() -> tuple[Recorder, Recorder, list[str]]:
        errors: list[str] = []
        out = []
        async with mocked(handler) as http:
            for gpu in ("gpu-r", "gpu-d"):
                rec = Recorder()
                d = Dispatcher(
                    NoSource(),  # type: ignore[arg-type]
                    dispatch=DispatchSection(),
                    calls=RequestRouterSection(max_retries=2, retry_delay=0.0),
                    http=http,
                    monotonic=time.monotonic,
                    logger=logging.getLogger("test"),
                    on_worker_error=errors.append,
                    worker_urls={"gpu-r": "http://refuses", "gpu-d": "http://down"},
                )
                d.connect(rec)
                d.start(gpu, 4, JobSpec("req", {}, 1.0, 1.0))
                await asyncio.wait_for(rec.ended.wait(), 5)
                await d.aclose()
                out.append(rec)
        return out[0], out[1], errors

    refused, down, errors = asyncio.run(go())
    (failed,) = refused.events
    assert failed[:3] == ("failed", "req", 4) and "payload: bad" in failed[3]
    assert failed[4] is False  # the request's fault: not held against the GPU
    assert down.events == [("down", "gpu-d", down.events[0][2])]
    assert "worker unreachable" in down.events[0][2] and "HTTP 502" in down.events[0][2]
    assert calls.count("down") == 3 and errors == ["gpu-d"] * 3  # 1 + max_retries tries


def test_a_guard_that_says_no_stops_every_call_before_it_is_sent() -> None:
    """A leader whose lease term is over (``guard`` False): no call leaves, the caller's
    task ends as if cancelled (``LeaseLost``), and the next call is asked again."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(200, json={"state": "running", "job_id": "j1"})

    held = [True]

    async def go() -> tuple[bool, bool]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            w = WorkerClient("http://w", http, epoch=3, guard=lambda: held[0])
            await w.status("j1")
            held[0] = False
            with pytest.raises(LeaseLost):
                await w.submit("r1", {}, 10, 100, "j2")
            task = asyncio.ensure_future(w.status("j1"))
            await asyncio.wait([task])
            with pytest.raises(LeaseLost):
                await w.ack(["j1"])
            return task.cancelled(), isinstance(LeaseLost(), asyncio.CancelledError)

    cancelled, is_cancel = asyncio.run(go())
    assert sent == ["/jobs/j1"] and cancelled and is_cancel
