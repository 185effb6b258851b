"""Overload on the routing service over loopback: is the queue bounded, and how fast does
it recover?

    .venv/bin/python benchmarks/overload.py [--virtual-gpus 8] [--job-ms 100] [--factor 2]
        [--duration 30] [--admission on|off|both] [--drain-timeout 120] [--out FILE]

Starts ``gpu-router serve --virtual-gpus N`` on 127.0.0.1 (quotas out of the way, the
queue bound out of the way, ``sla.admit_by_wait`` on or off) and sends POST
/api/v1/route open loop (``open_loop``) at ``--factor`` times the fleet's capacity (N
one-slot GPUs, jobs of ``--job-ms``: N * 1000 / job_ms requests per second) for
``--duration`` seconds, priorities 1-5 in the proportions 0.3 0.2 0.2 0.15 0.15 (those
of ``scenarios/priority_overload_2x.yaml``). Every 0.5 s it reads the queue and the
running count (GET /api/v1/metrics) and the server's resident memory (/proc, the server
and its child processes); after the overload it keeps reading until the queue is empty
(``recovery_s``: from the end of the overload to the first empty-queue reading) or
``--drain-timeout`` passes. It then reads every acknowledged request's status and
reports the wait (start - submission) per priority. Prints JSON per run: answers by
HTTP status, the longest queue, RSS at start / peak / end, the recovery time and the
waits; ``--admission both`` runs with admission by predicted wait and without it, one
after the other, each against a fresh server.

Bounded: loopback only, at most factor * capacity * duration requests per run, at most
``--max-inflight`` open at once, and every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_loop
import service_load as sl

PRIORITY_MIX = {1: 0.3, 2: 0.2, 3: 0.2, 4: 0.15, 5: 0.15}
HEADERS = {"Authorization": f"Bearer {sl.SERVICE_KEY}", "Content-Type": "application/json"}


def write_config(path: Path, journal: Path, admission: bool) -> None:
    """Quotas and the queue bound out of the way: only admission by wait can refuse."""
    import yaml

    big = 1_000_000_000
    cfg = {
        "auth": {"keys": [{"key": sl.SERVICE_KEY, "user_id": "orchestrator", "role": "service"}]},
        "user_quota_manager": {
            "default_gpu_limit": 1_000_000,
            "default_request_limit": 1_000_000,
            "default_priority_limit": 1_000_000,
            "requests_per_minute": 100_000_000,
            "requests_per_day": big,
        },
        "queue": {"max_length": 10_000_000},
        "sla": {"admit_by_wait": admission},
        "journal": {"path": str(journal)},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MB (Linux /proc)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024.0
        except OSError:
            continue
    return round(total, 1)


async def sample(base: str, pid: int, rows: list[dict[str, Any]], t0: float) -> None:
    """Every 0.5 s: queue, running, RSS (until cancelled)."""
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=5.0) as c:
        while True:
            try:
                r = await c.get("/api/v1/metrics")
                system = r.json()["data"]["system"]
                queued, running = system["queued_requests"], system["active_requests"]
            except (httpx.HTTPError, ValueError, KeyError):
                queued = running = None
            rows.append(
                {
                    "t": round(time.perf_counter() - t0, 2),
                    "queued": queued,
                    "running": running,
                    "rss_mb": rss_mb(pid),
                }
            )
            await asyncio.sleep(0.5)


async def waits_by_priority(base: str, acked: dict[str, int]) -> dict[str, Any]:
    """Wait (start - submission, s) per priority over the acknowledged requests."""
    out: dict[int, list[float]] = {p: [] for p in PRIORITY_MIX}
    never = dict.fromkeys(PRIORITY_MIX, 0)
    sem = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=base, headers=HEADERS, timeout=10.0, limits=limits) as c:

        async def one(rid: str, priority: int) -> None:
            async with sem:
                d = (await c.get(f"/api/v1/requests/{rid}")).json()["data"]
            if not d or d["start_time"] is None:
                never[priority] += 1
                return
            start = datetime.fromisoformat(d["start_time"])
            submitted = datetime.fromisoformat(d["submitted_time"])
            out[priority].append((start - submitted).total_seconds())

        await asyncio.gather(*(one(rid, p) for rid, p in acked.items()))
    res: dict[str, Any] = {}
    for p, w in out.items():
        a = np.array(w)
        res[str(p)] = {
            "acknowledged": len(w) + never[p],
            "not_started": never[p],
            "wait_p50_s": round(float(np.percentile(a, 50)), 3) if len(a) else None,
            "wait_p99_s": round(float(np.percentile(a, 99)), 3) if len(a) else None,
            "wait_max_s": round(float(a.max()), 3) if len(a) else None,
        }
    return res


async def overload(base: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    capacity = args.virtual_gpus * 1000.0 / args.job_ms
    rate = args.factor * capacity
    n = int(rate * args.duration)
    rng = np.random.default_rng(args.seed)
    priorities = rng.choice(
        list(PRIORITY_MIX), size=n, p=np.array(list(PRIORITY_MIX.values()))
    ).tolist()
    host, port = base.removeprefix("http://").rsplit(":", 1)
    ids = [f"ov-{uuid.uuid4().hex[:12]}-{i}" for i in range(n)]
    requests = []
    for rid, p in zip(ids, priorities, strict=True):
        body = {
            "request_id": rid,
            "user_id": "orchestrator",
            "model_id": "llama",
            "priority": p,
            "type": "inference",
            "resource_requirements": {"memory": 1000, "expected_duration": args.job_ms},
            "payload": {"simulate": {"duration_ms": args.job_ms}},
        }
        requests.append(
            open_loop.post("/api/v1/route", host, int(port), json.dumps(body).encode(), HEADERS)
        )
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    sampler = asyncio.create_task(sample(base, pid, rows, t0))
    await asyncio.sleep(1.0)  # a baseline reading
    run = await open_loop.open_loop(
        host, int(port), requests, rate, max_connections=64, max_inflight=args.max_inflight
    )
    end = run.first_due + n / rate - t0  # when the last request was due, s after t0
    deadline = time.perf_counter() + args.drain_timeout
    recovery = None
    while time.perf_counter() < deadline:
        after = [r for r in rows if r["t"] >= end and r["queued"] is not None]
        if after and after[-1]["queued"] == 0:
            recovery = round(next(r["t"] for r in after if r["queued"] == 0) - end, 2)
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(2.0)  # memory after the drain
    sampler.cancel()
    statuses: dict[str, int] = {}
    for s in run.status:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    acked = {ids[i]: priorities[i] for i, s in zip(run.index, run.status, strict=True) if s == 200}
    ack_ms = [lat for lat, s in zip(run.latency_s, run.status, strict=True) if s is not None]
    during = [r for r in rows if r["t"] <= end and r["queued"] is not None]
    return {
        "capacity_rps": capacity,
        "offered_rps": rate,
        "sent": n - run.not_sent,
        "not_sent": run.not_sent,
        "answers_by_status": statuses,
        "answer_latency_p99_ms": open_loop.percentile_ms(ack_ms, 0.99),
        "queue_max": max((r["queued"] for r in rows if r["queued"] is not None), default=None),
        "queue_at_overload_end": during[-1]["queued"] if during else None,
        "rss_mb_start": rows[0]["rss_mb"] if rows else None,
        "rss_mb_peak": max((r["rss_mb"] for r in rows), default=None),
        "rss_mb_end": rows[-1]["rss_mb"] if rows else None,
        "recovery_s": recovery,
        "waits": await waits_by_priority(base, acked),
        "timeline": rows[:: max(1, len(rows) // 40)],
    }


def one_run(args: argparse.Namespace, admission: bool, tmp: Path) -> dict[str, Any]:
    port = sl.free_port()
    cfg = tmp / f"config-{admission}.yaml"
    write_config(cfg, tmp / f"journal-{admission}.sqlite3", admission)
    log = tmp / f"router-{admission}.log"
    cmd = [sys.executable, "-m", "gpu_router.cli", "serve", "--config", str(cfg)]
    cmd += ["--virtual-gpus", str(args.virtual_gpus), "--host", "127.0.0.1", "--port", str(port)]
    proc = sl.start(cmd, log)
    base = f"http://127.0.0.1:{port}"
    try:
        sl.wait_ready(base, proc, log)
        res = asyncio.run(overload(base, proc.pid, args))
    finally:
        sl.stop(proc)
    return {"admit_by_wait": admission, **res}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--virtual-gpus", type=int, default=8)
    p.add_argument("--job-ms", type=int, default=100)
    p.add_argument("--factor", type=float, default=2.0, help="offered load / capacity")
    p.add_argument("--duration", type=float, default=30.0, help="overload seconds")
    p.add_argument("--admission", choices=("on", "off", "both"), default="on")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--max-inflight", type=int, default=4096)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.factor * args.virtual_gpus * 1000.0 / args.job_ms * args.duration > 200_000:
        p.error("more than 200,000 requests: keep the run bounded")
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.admission]
    with tempfile.TemporaryDirectory(prefix="overload-") as d:
        runs = [one_run(args, mode, Path(d)) for mode in modes]
    out = {"config": vars(args) | {"out": str(args.out)}, "cpus": os.cpu_count(), "runs": runs}
    text = json.dumps(out, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
