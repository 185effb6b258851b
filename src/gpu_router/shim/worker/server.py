"""The reference worker: runs real jobs on one GPU (or the CPU) behind a small HTTP API.

``POST /jobs`` ``{request_id, payload, expected_duration_ms, memory_mb}`` -> 202
``{job_id, state}``; ``GET /jobs/{id}`` -> ``{job_id, request_id, state (running|
completed|failed|cancelled), progress 0-1, result, error}``; ``DELETE /jobs/{id}``
cancels (idempotent); ``GET /health`` -> ``{status, gpu, device_name, mode, ...}``.

The job is a matrix-multiply loop. In ``cuda`` mode (PyTorch and a CUDA GPU present)
it multiplies bf16 matrices (8192 x 8192 unless the payload's ``matrix_size`` says
otherwise) on ``cuda:N``, after reserving the declared ``memory_mb`` on the GPU
(``payload.reserve_memory: false`` skips that), synchronizing about every 10 ms to
report progress and honour a cancel. In ``cpu`` mode it multiplies float32 matrices
(256 x 256) with numpy in a thread. Either runs ``payload.iterations`` iterations when
given, otherwise until ``expected_duration_ms`` has passed (at least one iteration),
never longer than ``max_duration_s``. The result reports the measured wall time, the
iterations, the achieved TFLOP/s and the device that ran it.

PyTorch is imported only when ``cuda`` or ``auto`` mode looks for a GPU, never at module
load. ``CUDA_DEVICE_ORDER`` defaults to ``PCI_BUS_ID`` so that ``--gpu N`` is the same
GPU as NVML's index N.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import logging
import math
import os
import platform
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gpu_router.policy import RouterError
from gpu_router.shim.gpu_sources.base import JOB_CANCELLED, JOB_COMPLETED, JOB_FAILED, JOB_RUNNING

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_ITERATIONS = 10_000_000
MAX_MATRIX = 32_768
CHUNK_S = 0.01  # synchronize (and look at cancel) about this often


class WorkerError(RouterError):
    """The worker cannot start as asked (no CUDA GPU in cuda mode, bad index)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    mode: str  # "cuda" | "cpu"
    index: int
    name: str
    torch_version: str | None = None

    @property
    def label(self) -> str:
        return f"cuda:{self.index}" if self.mode == "cuda" else "cpu"


def detect_device(gpu_index: int, mode: str = "auto") -> DeviceInfo:
    """``cuda`` when PyTorch sees GPU ``gpu_index`` (required in mode ``cuda``), else ``cpu``."""
    if mode not in ("auto", "cuda", "cpu"):
        raise WorkerError(f"mode={mode!r}: must be auto, cuda or cpu")
    if gpu_index < 0:
        raise WorkerError(f"gpu={gpu_index}: must be >= 0")
    if mode != "cpu":
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            torch = None
        if torch is not None and torch.cuda.is_available():
            count = torch.cuda.device_count()
            if gpu_index < count:
                name = torch.cuda.get_device_name(gpu_index)
                return DeviceInfo("cuda", gpu_index, name, torch.__version__)
            if mode == "cuda":
                raise WorkerError(f"gpu={gpu_index}: PyTorch sees {count} CUDA GPU(s)")
        if mode == "cuda":
            why = "PyTorch is not installed" if torch is None else "CUDA is not available"
            raise WorkerError(f"mode=cuda: {why}")
    return DeviceInfo("cpu", gpu_index, platform.processor() or platform.machine() or "cpu")


@dataclass
class Job:
    job_id: str
    request_id: str
    payload: Any
    expected_duration_ms: float
    memory_mb: float
    state: str = JOB_RUNNING
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "request_id": self.request_id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "result": self.result,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _opt_int(payload: Any, key: str, lo: int, hi: int) -> int | None:
    value = payload.get(key) if isinstance(payload, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"payload.{key}={value!r}: must be an integer in [{lo}, {hi}]")
    return value


class _Loop:
    """Iteration bookkeeping shared by the CPU and CUDA loops."""

    def __init__(self, job: Job, max_duration_s: float) -> None:
        self.job = job
        self.iterations = _opt_int(job.payload, "iterations", 1, MAX_ITERATIONS)
        self.duration_s = min(job.expected_duration_ms / 1000.0, max_duration_s)
        self.max_duration_s = max_duration_s
        self.done = 0
        self.t0 = time.perf_counter()

    def more(self) -> int:
        """How many iterations may run before the next look (0: stop)."""
        if self.job.cancel.is_set():
            return 0
        elapsed = time.perf_counter() - self.t0
        if self.iterations is not None:
            self.job.progress = self.done / self.iterations
            if elapsed >= self.max_duration_s:
                return 0
            return self.iterations - self.done
        if self.done and elapsed >= self.duration_s:
            return 0
        self.job.progress = 0.0 if self.duration_s <= 0 else min(1.0, elapsed / self.duration_s)
        return MAX_ITERATIONS

    def result(self, device: DeviceInfo, n: int, dtype: str, extra: dict[str, Any]) -> dict:
        wall = time.perf_counter() - self.t0
        return {
            "device": device.label,
            "device_name": device.name,
            "mode": device.mode,
            "gpu": device.index,
            "wall_time_ms": round(wall * 1000.0, 3),
            "iterations": self.done,
            "matrix_size": n,
            "dtype": dtype,
            "tflops": round(2.0 * n**3 * self.done / wall / 1e12, 4) if wall > 0 else None,
            **extra,
        }


def run_cpu(job: Job, device: DeviceInfo, max_duration_s: float) -> dict[str, Any]:
    """float32 numpy matmuls in this thread (numpy releases the GIL)."""
    import numpy as np  # noqa: PLC0415 - keeps import of this module light

    n = _opt_int(job.payload, "matrix_size", 1, 4096) or 256
    loop = _Loop(job, max_duration_s)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    loop.t0 = time.perf_counter()
    while (budget := loop.more()) > 0:
        np.matmul(a, b, out=c)
        loop.done += 1
        del budget
    return loop.result(device, n, "float32", {})


def run_cuda(job: Job, device: DeviceInfo, max_duration_s: float) -> dict[str, Any]:
    """bf16 matmuls on ``cuda:N`` on a stream of its own, synchronized about every 10 ms."""
    torch = importlib.import_module("torch")
    n = _opt_int(job.payload, "matrix_size", 1, MAX_MATRIX) or 8192
    reserve = not (isinstance(job.payload, dict) and job.payload.get("reserve_memory") is False)
    dev = torch.device("cuda", device.index)
    operands_mb = 3 * n * n * 2 / 2**20
    reserved_mb = max(0.0, job.memory_mb - operands_mb) if reserve else 0.0
    tensors: list[Any] = []
    try:
        with torch.cuda.device(dev):
            stream = torch.cuda.Stream(device=dev)
            with torch.cuda.stream(stream):
                if reserved_mb > 0:
                    tensors.append(
                        torch.empty(int(reserved_mb * 2**20), dtype=torch.uint8, device=dev)
                    )
                a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
                b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
                c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
                tensors += [a, b, c]
                stream.synchronize()
                loop = _Loop(job, max_duration_s)
                batch = 1
                while (budget := loop.more()) > 0:
                    k = min(batch, budget)
                    t = time.perf_counter()
                    for _ in range(k):
                        torch.matmul(a, b, out=c)
                    stream.synchronize()
                    loop.done += k
                    if time.perf_counter() - t < CHUNK_S / 2 and batch < 4096:
                        batch *= 2
                return loop.result(device, n, "bfloat16", {"memory_reserved_mb": reserved_mb})
    finally:
        tensors.clear()
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


def warm_up_cuda(device: DeviceInfo) -> None:
    """Create the CUDA context (145-450 ms) before the first job, not during it."""
    torch = importlib.import_module("torch")
    dev = torch.device("cuda", device.index)
    x = torch.ones(64, 64, device=dev, dtype=torch.bfloat16)
    (x @ x).sum().item()


class Worker:
    """Jobs of one worker process: each runs in a thread of a bounded pool."""

    def __init__(
        self,
        device: DeviceInfo,
        *,
        max_jobs: int = 16,
        max_duration_s: float = 3600.0,
        keep_jobs: int = 10_000,
        runner: Callable[[Job, DeviceInfo, float], dict[str, Any]] | None = None,
    ) -> None:
        self.device = device
        self.max_jobs = max_jobs
        self.max_duration_s = max_duration_s
        self.keep_jobs = keep_jobs
        self.runner = runner or (run_cuda if device.mode == "cuda" else run_cpu)
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.by_request: dict[str, str] = {}
        self.running = 0
        self.ready = device.mode == "cpu"
        self._ids = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="job")
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.device.mode == "cuda":
            await asyncio.get_running_loop().run_in_executor(self._pool, warm_up_cuda, self.device)
        self.ready = True

    async def stop(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, request_id: str, payload: Any, duration_ms: float, memory_mb: float) -> Job:
        old = self.jobs.get(self.by_request.get(request_id, ""))
        if old is not None and old.state in (JOB_RUNNING, JOB_COMPLETED):
            return old  # a retried POST does not run the work twice
        job = Job(f"j{next(self._ids)}-{os.getpid()}", request_id, payload, duration_ms, memory_mb)
        self.jobs[job.job_id] = job
        self.by_request[request_id] = job.job_id
        self.running += 1
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._evict()
        return job

    async def _run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._pool, self.runner, job, self.device, self.max_duration_s
            )
        except Exception as exc:  # noqa: BLE001 - the job failed; report why, keep serving
            if job.state == JOB_RUNNING:
                job.state, job.error = JOB_FAILED, f"{type(exc).__name__}: {exc}"[:500]
        else:
            if job.state == JOB_RUNNING:  # a cancel already made it terminal
                job.state, job.result, job.progress = JOB_COMPLETED, result, 1.0
        finally:
            self.running -= 1
            if job.finished_at is None:
                job.finished_at = time.time()

    def cancel(self, job: Job) -> None:
        if job.state == JOB_RUNNING:
            job.cancel.set()
            job.state, job.finished_at = JOB_CANCELLED, time.time()

    def _evict(self) -> None:
        excess = len(self.jobs) - self.keep_jobs
        if excess <= 0:
            return
        for jid in [j for j, job in self.jobs.items() if job.state != JOB_RUNNING][:excess]:
            job = self.jobs.pop(jid)
            if self.by_request.get(job.request_id) == jid:
                del self.by_request[job.request_id]

    def health(self) -> dict[str, Any]:
        d = self.device
        return {
            "status": "ok" if self.ready else "starting",
            "gpu": d.index,
            "device_name": d.name,
            "mode": d.mode,
            "device": d.label,
            "torch": d.torch_version,
            "running": self.running,
            "max_jobs": self.max_jobs,
        }


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key, 0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or value > 1e12
    ):
        raise ValueError(f"{key}={value!r}: must be a finite number >= 0")
    return float(value)


def create_app(worker: Worker) -> Starlette:
    """The worker's Starlette app; its lifespan warms the device up and stops the jobs."""

    async def submit(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "body is not valid JSON")
        if not isinstance(body, dict):
            return _error(422, "body must be a JSON object", field="body")
        unknown = set(body) - {"request_id", "payload", "expected_duration_ms", "memory_mb"}
        if unknown:
            return _error(422, f"unknown fields: {sorted(unknown)}", field=sorted(unknown)[0])
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 256:
            return _error(422, "request_id: must be a non-empty string", field="request_id")
        payload = body.get("payload")
        try:
            duration = _number(body, "expected_duration_ms")
            memory = _number(body, "memory_mb")
            _opt_int(payload, "iterations", 1, MAX_ITERATIONS)
            _opt_int(payload, "matrix_size", 1, MAX_MATRIX)
        except ValueError as exc:
            return _error(422, str(exc), field=str(exc).split("=")[0])
        if not worker.ready:
            return _error(503, "worker is starting", retry_after=1)
        if worker.running >= worker.max_jobs:
            old = worker.jobs.get(worker.by_request.get(request_id, ""))
            if old is None or old.state not in (JOB_RUNNING, JOB_COMPLETED):
                return JSONResponse({"error": "worker busy"}, 503, headers={"Retry-After": "1"})
        job = worker.submit(request_id, payload, duration, memory)
        return JSONResponse({"job_id": job.job_id, "state": job.state}, status_code=202)

    async def status(request: Request) -> JSONResponse:
        job = worker.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such job")
        return JSONResponse(job.view())

    async def cancel(request: Request) -> JSONResponse:
        job = worker.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such job")
        worker.cancel(job)
        return JSONResponse({"job_id": job.job_id, "state": job.state})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(worker.health(), status_code=200 if worker.ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    return Starlette(
        routes=[
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs/{job_id}", status, methods=["GET"]),
            Route("/jobs/{job_id}", cancel, methods=["DELETE"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
