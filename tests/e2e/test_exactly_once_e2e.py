"""Exactly-once execution across router SIGKILLs (issue 12), with real processes: the
router and three CPU reference workers on loopback, bounded open-loop load, and kills
aimed at the moment after a worker finished a job and before the router recorded it.

Each worker writes a JSON line per job start and end (``--job-log``): the test counts,
at the workers, how many jobs each request id started and completed. The router runs
with ``journal.lazy_commit_ms`` 400 (state changes reach the journal up to 0.4 s late)
and ``dispatch.ack_interval`` 2 s, which widens that window; every kill waits for a job
end in a worker's log and kills at once, then reads the journal to see whether the kill
landed inside the window (the request not recorded completed).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import ADMIN, KEYS, free_port, hdr, router_config, start_router, start_worker

pytestmark = [pytest.mark.e2e]


class JobLogs:
    """The workers' job logs, read incrementally."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.offsets = [0] * len(paths)
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for i, p in enumerate(self.paths):
            if not p.exists():
                continue
            with open(p, "rb") as f:
                f.seek(self.offsets[i])
                data = f.read()
            cut = data.rfind(b"\n") + 1
            self.offsets[i] += cut
            new += [json.loads(line) for line in data[:cut].splitlines() if line]
        self.events += new
        return new


class Load(threading.Thread):
    """Requests at ``rate`` per second until stopped; remembers those answered 200."""

    def __init__(self, url: str, rate: float, duration_ms: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rate, self.duration_ms = url, rate, duration_ms
        self.acked: list[str] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        users = list(KEYS)
        n = 0
        t0 = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=2.0) as c:
            while not self.stop.is_set():
                due = t0 + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                user = users[n % 3]
                rid = f"x1-{n}"
                n += 1
                body = {
                    "request_id": rid,
                    "user_id": user,
                    "model_id": "mm",
                    "priority": 3,
                    "type": "inference",
                    "payload": {},
                    "resource_requirements": {"memory": 256, "expected_duration": self.duration_ms},
                }
                try:
                    r = c.post("/api/v1/route", json=body, headers=hdr(KEYS[user]))
                except httpx.HTTPError:
                    self.refused += 1
                    continue
                if r.status_code == 200:
                    self.acked.append(rid)
                else:
                    self.refused += 1


def _state(tmp: Path, rid: str) -> str | None:
    db = sqlite3.connect(f"file:{tmp / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT state FROM requests WHERE request_id = ?", (rid,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def campaign(tmp: Path, kills: int, rate: float, duration_ms: int = 60) -> dict[str, Any]:
    ports = [free_port() for _ in range(3)]
    logs = [tmp / f"jobs{i}.jsonl" for i in range(3)]
    workers = [
        start_worker(i, p, tmp, extra=["--job-log", str(logs[i])]) for i, p in enumerate(ports)
    ]
    cfg = router_config(
        tmp,
        ports,
        journal={"lazy_commit_ms": 400},
        dispatch={"ack_interval": 2.0},
        user_quota_manager={"requests_per_day": 1_000_000},
    )
    port = free_port()
    job_logs = JobLogs(logs)
    figures: dict[str, Any] = {"kills": 0, "kills_in_window": 0}
    router, url = start_router(tmp, cfg, port)
    load = Load(url, rate, duration_ms)
    try:
        load.start()
        time.sleep(1.0)
        for _ in range(kills):
            job_logs.poll()
            deadline = time.monotonic() + 10
            ended = None
            while ended is None and time.monotonic() < deadline:
                ends = [e for e in job_logs.poll() if e["event"] == "end"]
                ended = ends[-1] if ends else None
                if ended is None:
                    time.sleep(0.002)
            router.kill()  # right after a worker finished a job
            figures["kills"] += 1
            if ended is not None and _state(tmp, ended["request_id"]) != "completed":
                figures["kills_in_window"] += 1
            time.sleep(0.2)
            router, url = start_router(tmp, cfg, port)
            time.sleep(0.5)
        time.sleep(0.5)
        load.stop.set()
        load.join(10)
        acked = list(load.acked)
        done: dict[str, str] = {}
        last_state: dict[str, str] = {}
        # The backlog drains at the workers' pace: wait while requests keep finishing
        # (at most 20 s without one ending, 300 s in all), so that "lost" counts requests
        # that stopped moving, not a queue that had not drained yet.
        hard_deadline = time.monotonic() + 300
        stalled_at = time.monotonic() + 20
        with httpx.Client(base_url=url, timeout=10) as c:
            pending = set(acked)
            while pending and time.monotonic() < min(hard_deadline, stalled_at):
                for rid in list(pending):
                    r = c.get(f"/api/v1/requests/{rid}", headers=hdr(ADMIN))
                    d = r.json()["data"] if r.status_code == 200 else {"status": "unknown"}
                    last_state[rid] = d["status"]
                    if d["status"] in ("completed", "failed", "cancelled"):
                        done[rid] = d["status"]
                        pending.discard(rid)
                        stalled_at = time.monotonic() + 20
                if pending:
                    time.sleep(0.2)
        job_logs.poll()
        time.sleep(0.3)  # the last ends reach the logs
        job_logs.poll()
    finally:
        load.stop.set()
        router.stop()
        for w in workers:
            w.stop()
    starts = Counter(e["request_id"] for e in job_logs.events if e["event"] == "start")
    completions = Counter(
        e["request_id"]
        for e in job_logs.events
        if e["event"] == "end" and e.get("state") == "completed"
    )
    figures.update(
        rate=rate,
        acknowledged=len(acked),
        completed=sum(1 for s in done.values() if s == "completed"),
        not_completed=sorted(r for r in acked if done.get(r) != "completed")[:10],
        lost=len([r for r in acked if r not in done]),
        lost_states=dict(Counter(last_state[r] for r in acked if r not in done)),
        started_twice=sum(1 for n in starts.values() if n > 1),
        completed_twice=sum(1 for n in completions.values() if n > 1),
        twice_examples=[r for r, n in starts.items() if n > 1][:5],
        jobs_started=sum(starts.values()),
    )
    return figures


def _check(figures: dict[str, Any], kills: int) -> None:
    print("campaign figures:", json.dumps(figures))
    assert figures["kills"] == kills
    assert figures["kills_in_window"] >= 1, "no kill landed after a finish, before its record"
    assert figures["lost"] == 0
    assert figures["completed"] == figures["acknowledged"], figures["not_completed"]
    assert figures["completed_twice"] == 0, figures["twice_examples"]
    assert figures["started_twice"] == 0, figures["twice_examples"]


@pytest.mark.timeout(150)
def test_router_sigkills_under_load_run_nothing_twice(tmp_path: Path) -> None:
    kills = int(os.environ.get("EXACTLY_ONCE_KILLS", "5"))
    _check(campaign(tmp_path, kills, rate=100.0), kills)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_router_sigkill_campaign_long(tmp_path: Path) -> None:
    kills = int(os.environ.get("EXACTLY_ONCE_KILLS", "20"))
    with contextlib.suppress(KeyError):
        del os.environ["EXACTLY_ONCE_KILLS"]
    _check(campaign(tmp_path, kills, rate=200.0), kills)
