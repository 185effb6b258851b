"""The replay client: the simulator's workload submitted to the live service on the wall
clock, and what the service recorded for each request.

Request i is POSTed at ``t0 + arrival_s[i]`` (a task per request, so a slow answer never
delays a later submission) with its priority, user, model, declared duration and memory,
and ``payload.sleep_ms`` = its work (the worker's CPU-mode sleep job runs exactly that
long). After the last submission the client reads each request's status until every one
is terminal. Times come back relative to ``t0`` (wall seconds): the client's send and
answer, and the service's records: ``submitted_time``, ``start_time`` (the worker
accepted the job), ``completion_time`` (the service saw it end), at 1 ms resolution.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from ..sim.workload import Workload

TERMINAL = frozenset({"completed", "failed", "cancelled"})


def _epoch(iso: str | None) -> float:
    if iso is None:
        return float("nan")
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def bodies(wl: Workload) -> list[dict[str, Any]]:
    """The POST /api/v1/route body of each request, in arrival order."""
    width = max(6, len(str(max(len(wl) - 1, 0))))
    return [
        {
            "request_id": f"r{i:0{width}d}",
            "user_id": wl.user_names[int(wl.user[i])],
            "model_id": wl.model_ids[int(wl.model_idx[i])],
            "priority": int(wl.priority[i]),
            "type": wl.type_names[int(wl.type_idx[i])],
            "resource_requirements": {
                "memory": round(float(wl.memory_mb[i])),
                "expected_duration": round(float(wl.declared_ms[i])),
            },
            "payload": {"sleep_ms": round(float(wl.work[i]) * 1000.0, 3)},
        }
        for i in range(len(wl))
    ]


async def replay(
    url: str, key: str, wl: Workload, *, drain_timeout_s: float = 120.0, lead_s: float = 0.5
) -> tuple[pd.DataFrame, float]:
    """Submit ``wl`` to the service at ``url`` on the wall clock; ``(records, t0)``."""
    reqs = bodies(wl)
    arrival = wl.arrival_s.tolist()
    sent = np.full(len(reqs), np.nan)
    answered = np.full(len(reqs), np.nan)
    answer: list[str] = [""] * len(reqs)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        t0 = time.time() + lead_s
        loop_t0 = time.perf_counter() + lead_s

        async def submit(i: int) -> None:
            sent[i] = time.time() - t0
            try:
                r = await client.post("/api/v1/route", json=reqs[i], timeout=30.0)
                data = r.json().get("data") or {}
                answer[i] = str(data.get("status") or f"http {r.status_code}")
            except httpx.HTTPError as exc:
                answer[i] = f"error {type(exc).__name__}"
            answered[i] = time.time() - t0

        tasks = []
        for i, at in enumerate(arrival):
            delay = loop_t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit(i)))
        await asyncio.gather(*tasks)
        status = await _drain(client, [r["request_id"] for r in reqs], answer, drain_timeout_s)
    rows = []
    for i, body in enumerate(reqs):
        st = status.get(body["request_id"], {})
        rows.append(
            {
                "request_id": body["request_id"],
                "priority": body["priority"],
                "arrival_s": arrival[i],
                "sent_s": sent[i],
                "answered_s": answered[i],
                "answer": answer[i],
                "outcome": "rejected" if answer[i] == "rejected" else st.get("status", "lost"),
                "gpu_id": st.get("assigned_gpu"),
                "submit_s": _epoch(st.get("submitted_time")) - t0,
                "start_s": _epoch(st.get("start_time")) - t0,
                "finish_s": _epoch(st.get("completion_time")) - t0,
                "work_s": float(wl.work[i]),
            }
        )
    return pd.DataFrame(rows), t0


async def _drain(
    client: httpx.AsyncClient, rids: list[str], answer: list[str], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """The status of every admitted request, read until all are terminal (or timeout)."""
    done: dict[str, dict[str, Any]] = {}
    pending = [r for r, a in zip(rids, answer, strict=True) if a in ("accepted", "queued")]
    deadline = time.monotonic() + timeout_s
    sem = asyncio.Semaphore(16)

    async def one(rid: str) -> None:
        async with sem:
            try:
                r = await client.get(f"/api/v1/requests/{rid}", timeout=30.0)
            except httpx.HTTPError:
                return
            data = r.json().get("data") or {}
            if data.get("status") in TERMINAL:
                done[rid] = data

    while pending and time.monotonic() < deadline:
        await asyncio.gather(*(one(r) for r in pending))
        pending = [r for r in pending if r not in done]
        if pending:
            await asyncio.sleep(0.5)
    return done
