"""An httpx client of the reference worker's job API, the same API as a virtual worker's.

``WorkerClient(url).submit(...)``, ``status(job_id)``, ``cancel(job_id)``, ``health()``.
A worker that does not answer, or answers 5xx, raises ``WorkerUnavailable``; an unknown
job raises ``JobNotFound``; a refused submission (4xx) raises ``SourceError``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from gpu_router.shim.gpu_sources.base import JobNotFound, SourceError, WorkerUnavailable


class WorkerClient:
    """One worker's job API over HTTP. Pass a shared ``httpx.AsyncClient`` to pool connections."""

    def __init__(
        self, url: str, client: httpx.AsyncClient | None = None, timeout_s: float = 5.0
    ) -> None:
        self.url = url.rstrip("/")
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._timeout = timeout_s

    async def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            r = await self._client.request(
                method, f"{self.url}{path}", json=body, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise WorkerUnavailable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 500:
            raise WorkerUnavailable(f"{self.url}{path}: HTTP {r.status_code}")
        try:
            data = r.json()
        except ValueError as exc:
            raise WorkerUnavailable(f"{self.url}{path}: answer is not JSON") from exc
        if r.status_code == 404:
            raise JobNotFound(f"{self.url}{path}: {data.get('error', 'not found')}")
        if r.status_code >= 400:
            raise SourceError(f"{self.url}{path}: HTTP {r.status_code}: {data.get('error')}")
        return data

    async def submit(
        self, request_id: str, payload: Any, expected_duration_ms: float, memory_mb: float
    ) -> str:
        body = {
            "request_id": request_id,
            "payload": payload,
            "expected_duration_ms": expected_duration_ms,
            "memory_mb": memory_mb,
        }
        return str((await self._call("POST", "/jobs", body))["job_id"])

    async def status(self, job_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/jobs/{quote(job_id, safe='')}")

    async def cancel(self, job_id: str) -> None:
        await self._call("DELETE", f"/jobs/{quote(job_id, safe='')}")

    async def health(self) -> dict[str, Any]:
        return await self._call("GET", "/health")

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()
