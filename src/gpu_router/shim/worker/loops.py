"""A reference worker job's work: the :class:`Job` record and the matmul loops that run it.

In ``cuda`` mode (:func:`run_cuda`) a job multiplies bf16 matrices (8192 x 8192 unless
the payload's ``matrix_size`` says otherwise) on ``cuda:N``, after reserving the declared
``memory_mb`` on the GPU (``payload.reserve_memory: false`` skips that), synchronizing
about every 10 ms to report progress and honour a cancel. In ``cpu`` mode
(:func:`run_cpu`) it multiplies float32 matrices (256 x 256) with numpy, or, when the
payload holds ``sleep_ms``, sleeps that many milliseconds and computes nothing (a job of
a known duration that costs no CPU: the twin check's jobs, docs/simulator.md). Either runs in a
thread of the worker's pool, ``payload.iterations`` iterations when given, otherwise until
``expected_duration_ms`` has passed (at least one iteration), never longer than
``max_duration_s``. The result reports the measured wall time, the iterations, the
achieved TFLOP/s and the device that ran it.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gpu_router.shim.gpu_sources.base import JOB_RUNNING, JobStatus

from .device import DeviceInfo

MAX_ITERATIONS = 10_000_000
MAX_MATRIX = 32_768
CHUNK_S = 0.01  # synchronize (and look at cancel) about this often


@dataclass
class Job:
    """One job: what was asked, and its state as the loop thread and cancels change it."""

    job_id: str
    request_id: str
    payload: Any
    expected_duration_ms: float
    memory_mb: float
    state: str = JOB_RUNNING
    progress: float = 0.0  # 0-1
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)  # wall clock, s
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    model: dict[str, Any] | None = None  # {id, memory_mb, evict}: to have resident first
    model_load_s: float | None = None  # seconds spent loading it (0: it was held)

    def view(self) -> JobStatus:
        st: JobStatus = {
            "job_id": self.job_id,
            "request_id": self.request_id,
            "state": self.state,
            "progress": round(self.progress, 4),
            "result": self.result,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.model_load_s is not None:
            st["model_load_s"] = self.model_load_s
        return st


def opt_int(payload: Any, key: str, lo: int, hi: int) -> int | None:
    """``payload[key]`` as an int in [lo, hi], None when absent; ValueError otherwise."""
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
        self.iterations = opt_int(job.payload, "iterations", 1, MAX_ITERATIONS)
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


def run_sleep(job: Job, device: DeviceInfo, sleep_s: float) -> dict[str, Any]:
    """Sleep ``sleep_s`` (s) in this thread, waking at least every ``CHUNK_S`` for a cancel."""
    loop = _Loop(job, sleep_s)
    end = loop.t0 + sleep_s
    while not job.cancel.is_set() and (left := end - time.perf_counter()) > 0:
        job.progress = 1.0 - left / sleep_s
        job.cancel.wait(min(CHUNK_S, left))
    loop.done = 1
    return loop.result(device, 0, "none", {"slept_ms": round(sleep_s * 1000.0, 3)})


def sleep_seconds(payload: Any, max_duration_s: float) -> float | None:
    """``payload.sleep_ms`` in seconds (at most ``max_duration_s``), None when absent."""
    value = payload.get("sleep_ms") if isinstance(payload, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e12:
        raise ValueError(f"payload.sleep_ms={value!r}: must be a number of ms >= 0")
    return min(float(value) / 1000.0, max_duration_s)


def run_cpu(job: Job, device: DeviceInfo, max_duration_s: float) -> dict[str, Any]:
    """float32 numpy matmuls in this thread (numpy releases the GIL), or a sleep
    (``payload.sleep_ms``)."""
    sleep_s = sleep_seconds(job.payload, max_duration_s)
    if sleep_s is not None:
        return run_sleep(job, device, sleep_s)
    import numpy as np

    n = opt_int(job.payload, "matrix_size", 1, 4096) or 256
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
    n = opt_int(job.payload, "matrix_size", 1, MAX_MATRIX) or 8192
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
