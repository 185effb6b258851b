"""The one client of a worker's HTTP job API (the reference worker, ``shim.worker.server``).

``WorkerClient(url, http)`` is a ``JobRunner``: ``submit(..., job_id=None) -> job_id``,
``status(job_id) -> JobStatus``, ``cancel(job_id)``, ``jobs(request_id=None) ->
list[JobStatus]`` (what the worker holds), ``ack(job_ids)`` (forget recorded jobs), plus
``health() -> WorkerHealth`` and ``healthy() -> bool``. Job ids are percent-encoded into
the path (any character, ``/`` included). Answers are read bare or in the ALT_LAS
envelope (``{status, data}``).
Every failure is a :class:`~gpu_router.shim.gpu_sources.base.WorkerCallError`:
``WorkerUnavailable`` (no answer, 5xx, an answer that is not the API's),
``JobNotFound`` (404) or ``JobRefused`` (other 4xx, 401 for a missing or wrong
``token``; ``worker_fault`` False). ``token`` is sent as ``Authorization: Bearer``;
``guard`` False (a leader that lost its lease): no call is made (:class:`LeaseLost`).
Pass a shared ``httpx.AsyncClient`` to pool connections; then ``aclose`` leaves it open.
Timeouts in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from gpu_router.shim.gpu_sources.base import (
    JobNotFound,
    JobRefused,
    JobStatus,
    WorkerHealth,
    WorkerUnavailable,
)
from gpu_router.shim.worker.call_guard import CALL_GUARD, LeaseLost

HEALTH_TIMEOUT_S = 2.0  # a health probe waits at most this long (or the call timeout)


def job_path(job_id: str) -> str:
    """The path of a job: ``/jobs/`` and the id percent-encoded, ``/`` included."""
    return "/jobs/" + quote(job_id, safe="")


def _unwrap(body: Any) -> Any:
    """Accept a bare answer or one in the ALT_LAS envelope."""
    if isinstance(body, dict) and "data" in body and "status" in body:
        return body["data"]
    return body


def _error_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), str | dict):
        return str(body["error"])[:200]
    return r.text[:200]


def _job_status(body: Any, where: str) -> JobStatus:
    """A status answer checked and typed: ``state`` must be a string; a ``progress`` that
    is not a number in [0, 1] reads as 0."""
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        raise WorkerUnavailable(f"{where}: answer has no state")
    p = body.get("progress")
    progress = 0.0
    if isinstance(p, int | float) and not isinstance(p, bool) and 0 <= p <= 1:
        progress = float(p)  # (NaN fails the bounds)
    err = body.get("error")
    st: JobStatus = {
        "job_id": str(body.get("job_id", "")),
        "request_id": str(body.get("request_id", "")),
        "state": body["state"],
        "progress": progress,
        "result": body.get("result"),
        "error": None if err is None else str(err),
    }
    if "started_at" in body:
        st["started_at"] = body["started_at"]
    if "finished_at" in body:
        st["finished_at"] = body["finished_at"]
    load = body.get("model_load_s")
    if isinstance(load, int | float) and not isinstance(load, bool) and 0 <= load < 1e9:
        st["model_load_s"] = float(load)
    return st


class WorkerClient:
    """One worker's job API over HTTP; ``traceparent`` and the leader's ``epoch`` are sent
    with every call (a worker answers 409 to an epoch older than the newest it has seen:
    :class:`JobRefused`). ``guard`` is asked before every call (a leader's
    ``Leadership.holds``): False, and the call is not made (:class:`LeaseLost`)."""

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient | None = None,
        *,
        timeout_s: float = 5.0,
        traceparent: str | None = None,
        token: str | None = None,
        epoch: int | None = None,
        guard: Callable[[], bool] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._guard = guard
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._timeout = timeout_s
        self._headers = {"traceparent": traceparent} if traceparent else {}
        if token is not None:
            self._headers["authorization"] = f"Bearer {token}"
        if epoch is not None:  # the leader's epoch (fencing: shim.worker.server)
            self._headers["x-router-epoch"] = str(epoch)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        where = f"{self.url}{path}"
        if self._guard is not None and not self._guard():
            raise LeaseLost(f"{where}: not called, this router's lease term is over")
        held = CALL_GUARD.set(self._guard)  # (asked again at each write: call_guard)
        try:
            r = await self._client.request(
                method, where, json=body, timeout=self._timeout, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from None
        finally:
            CALL_GUARD.reset(held)
        code = r.status_code
        if code == 404:
            raise JobNotFound(f"{where}: {_error_text(r) or 'not found'}", status=code)
        if code >= 500:
            raise WorkerUnavailable(f"{where}: HTTP {code}", status=code)
        if code >= 400:
            raise JobRefused(f"{where}: HTTP {code}: {_error_text(r)}", status=code)
        try:
            return _unwrap(r.json()) if r.content else None
        except ValueError:
            raise WorkerUnavailable(f"{where}: answer is not JSON", status=code) from None

    async def submit(
        self,
        request_id: str,
        payload: Any,
        expected_duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> str:
        """Start a job (ms, MB) as ``job_id`` (the router's id; None: the worker names it);
        its id. A worker holding that job id answers it and runs nothing again; without
        one, it returns the running or completed job of the same ``request_id``."""
        req: dict[str, Any] = {
            "request_id": request_id,
            "payload": payload,
            "expected_duration_ms": expected_duration_ms,
            "memory_mb": memory_mb,
        }
        if job_id is not None:
            req["job_id"] = job_id
        if model is not None:
            req["model"] = model
        body = await self._call("POST", "/jobs", req)
        if not isinstance(body, dict) or not isinstance(body.get("job_id"), str):
            raise WorkerUnavailable(f"{self.url}/jobs: answer has no job_id")
        return body["job_id"]

    async def status(self, job_id: str) -> JobStatus:
        path = job_path(job_id)
        return _job_status(await self._call("GET", path), f"{self.url}{path}")

    async def cancel(self, job_id: str) -> None:
        """Cancel a job (a finished one stays as it ended)."""
        await self._call("DELETE", job_path(job_id))

    async def jobs(self, request_id: str | None = None) -> list[JobStatus]:
        """Every job the worker holds (running, or finished and not acknowledged), or
        those of ``request_id``."""
        path = "/jobs" + (f"?request_id={quote(request_id, safe='')}" if request_id else "")
        body = await self._call("GET", path)
        items = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise WorkerUnavailable(f"{self.url}{path}: answer has no jobs list")
        return [_job_status(i, f"{self.url}{path}") for i in items]

    async def ack(self, job_ids: list[str]) -> None:
        """Tell the worker these finished jobs are recorded: it may forget them."""
        for i in range(0, len(job_ids), 1000):
            await self._call("POST", "/jobs/ack", {"job_ids": job_ids[i : i + 1000]})

    async def restart(self) -> dict[str, Any]:
        """Restart the worker's device (``POST /restart``): ``{restarted, cancelled,
        restarts}``."""
        body = await self._call("POST", "/restart", {})
        if not isinstance(body, dict) or body.get("restarted") is not True:
            raise WorkerUnavailable(f"{self.url}/restart: the worker did not say it restarted")
        return body

    async def health(self) -> WorkerHealth:
        """The worker's health answer; WorkerUnavailable while it is starting (503)."""
        body = await self._call("GET", "/health")
        if not isinstance(body, dict):
            raise WorkerUnavailable(f"{self.url}/health: answer is not an object")
        health: WorkerHealth = body  # type: ignore[assignment]
        return health

    async def healthy(self) -> bool:
        """Whether ``GET /health`` answers 200 within ``HEALTH_TIMEOUT_S``; never raises."""
        try:
            r = await self._client.get(
                self.url + "/health",
                timeout=min(self._timeout, HEALTH_TIMEOUT_S),
                headers=self._headers,
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def aclose(self) -> None:
        """Close the connection pool if this client made it."""
        if self._own:
            await self._client.aclose()
