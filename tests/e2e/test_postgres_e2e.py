"""The router on PostgreSQL, end to end with real processes: ``gpu-router serve --store
postgresql://...`` on a real server (``tests/shim/store/pg_server.py``), CPU reference
workers or the virtual fleet, on loopback.

- a router SIGKILLed with requests in flight, restarted on the same database: every
  acknowledged request is known and completes, none runs twice (counted at the workers);
- PostgreSQL stopped under load: submissions answer 503 with Retry-After (none is
  acknowledged that the database does not have), reads of requests go on, and the
  service writes again by itself once the database is back (3 s in the default suite,
  10 s under ``-m slow``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.shim.store.pg_server import PgServer, running_server

from .procs import ADMIN, KEYS, free_port, hdr, router_config, start_router, start_worker
from .test_exactly_once_e2e import JobLogs

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def pg() -> Iterator[PgServer]:
    yield from running_server()


def body(rid: str, user: str, duration_ms: int) -> dict[str, Any]:
    return {
        "request_id": rid,
        "user_id": user,
        "model_id": "mm",
        "priority": 3,
        "type": "inference",
        "payload": {},
        "resource_requirements": {"memory": 256, "expected_duration": duration_ms},
    }


def stored(url: str) -> dict[str, str]:
    """request_id (the client's) -> state, read from the database itself."""
    sql = "SELECT split_part(request_id, '/', 1), state FROM requests"
    with psycopg.connect(url) as conn:
        return dict(conn.execute(sql).fetchall())


def completed_at_workers(logs: list[Path]) -> Counter[str]:
    """How many times each request (its client id) completed, from the workers' job logs."""
    events = JobLogs(logs)
    events.poll()
    ends = [e for e in events.events if e["event"] == "end" and e["state"] == "completed"]
    return Counter(e["request_id"].split("/")[0] for e in ends)


def terminal(c: httpx.Client, rids: list[str], timeout_s: float = 60.0) -> dict[str, str]:
    done: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(rids) and time.monotonic() < deadline:
        for rid in rids:
            if rid not in done:
                d = c.get(f"/api/v1/requests/{rid}", headers=hdr(ADMIN)).json()["data"]
                if d["status"] in ("completed", "failed", "cancelled"):
                    done[rid] = d["status"]
        time.sleep(0.1)
    return done


@pytest.mark.timeout(120)
def test_a_killed_router_restarted_on_postgres_knows_and_finishes_every_request(
    tmp_path: Path, pg: PgServer
) -> None:
    db = pg.create_database()
    ports = [free_port() for _ in range(2)]
    logs = [tmp_path / f"jobs{i}.jsonl" for i in range(2)]
    workers = [
        start_worker(i, p, tmp_path, extra=["--job-log", str(logs[i])]) for i, p in enumerate(ports)
    ]
    cfg = router_config(tmp_path, ports)
    router, url = start_router(tmp_path, cfg, args=["--store", db])
    try:
        users = list(KEYS)
        rids = [f"pg-{i}" for i in range(24)]
        with httpx.Client(base_url=url, timeout=10) as c:
            for n, rid in enumerate(rids):
                user = users[n % 3]
                r = c.post("/api/v1/route", json=body(rid, user, 300), headers=hdr(KEYS[user]))
                assert r.status_code == 200, r.text
        # some ran, some run, some are queued: killed once one has completed (a fixed
        # sleep here could outlast all of them where the 24 submissions were slow)
        deadline = time.monotonic() + 30
        while "completed" not in stored(db).values():
            assert time.monotonic() < deadline, stored(db)
            time.sleep(0.02)
        router.kill()
        in_db = stored(db)
        assert set(rids) <= set(in_db)  # every 200 was in the database before it left
        assert any(s not in ("completed", "failed", "cancelled") for s in in_db.values())
        router, url = start_router(tmp_path, cfg, args=["--store", db])
        with httpx.Client(base_url=url, timeout=10) as c:
            done = terminal(c, rids)
        assert done == dict.fromkeys(rids, "completed")
        time.sleep(0.3)  # the last ends reach the job logs
    finally:
        router.stop()
        for w in workers:
            w.stop()
    assert all(s == "completed" for rid, s in stored(db).items() if rid in rids)
    completions = completed_at_workers(logs)
    assert set(completions) == set(rids)
    assert max(completions.values()) == 1  # nothing ran twice


class Load(threading.Thread):
    """Submissions at ``rate`` per second and a read of an acknowledged request after each
    one, with every answer's time, status and Retry-After."""

    def __init__(self, url: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.rate = url, rate
        self.writes: list[tuple[float, int, str | None, str]] = []  # t, status, retry, rid
        self.reads: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        users = list(KEYS)
        t0 = time.monotonic()
        n = 0
        acked: list[str] = []
        with httpx.Client(base_url=self.url, timeout=5.0) as c:
            while not self.stop.is_set():
                delay = t0 + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                user, rid = users[n % 3], f"load-{n}"
                n += 1
                try:
                    r = c.post("/api/v1/route", json=body(rid, user, 20), headers=hdr(KEYS[user]))
                except httpx.HTTPError:
                    self.writes.append((time.monotonic(), 0, None, rid))
                    continue
                retry = r.headers.get("retry-after")
                self.writes.append((time.monotonic(), r.status_code, retry, rid))
                if r.status_code == 200:
                    acked.append(rid)
                if acked:
                    got = c.get(f"/api/v1/requests/{acked[-1]}", headers=hdr(ADMIN))
                    self.reads.append((time.monotonic(), got.status_code))


def outage(tmp_path: Path, pg: PgServer, down_s: float, rate: float) -> None:
    db = pg.create_database()
    cfg = router_config(
        tmp_path,
        None,
        gpu_monitoring={"virtual_gpus": 4},
        user_quota_manager={"requests_per_day": 1_000_000},
    )
    router, url = start_router(tmp_path, cfg, args=["--store", db])
    load = Load(url, rate)
    try:
        load.start()
        time.sleep(1.5)
        down_at = time.monotonic()
        pg.stop()
        time.sleep(down_s)
        up_at = time.monotonic()
        pg.start()
        time.sleep(3.0)
        load.stop.set()
        load.join(10)
        acked = [rid for _t, status, _r, rid in load.writes if status == 200]
        with httpx.Client(base_url=url, timeout=10) as c:
            done = terminal(c, acked)
            health = c.get("/health").json()["data"]
    finally:
        load.stop.set()
        router.stop()
    during = [w for w in load.writes if down_at + 0.5 < w[0] < up_at]
    reads_during = [s for t, s in load.reads if down_at + 0.5 < t < up_at]
    after = [w for w in load.writes if w[0] > up_at + 2.0]
    assert during and after
    assert all(status == 503 and retry is not None for _t, status, retry, _ in during), {
        s for _t, s, _r, _ in during
    }
    assert all(status == 200 for _t, status, _r, _ in after)  # it recovered by itself
    print(
        f"outage {down_s} s at {rate}/s: {len(acked)} acknowledged, {len(during)} answered "
        f"503 while down, {len(reads_during)} reads answered 200 while down"
    )
    assert reads_during and all(s == 200 for s in reads_during)  # reads went on
    assert health["ready"] is True
    # every acknowledged request is in the database, and so is its end
    assert done == dict.fromkeys(acked, "completed")
    in_db = stored(db)
    assert {rid: in_db.get(rid) for rid in acked} == dict.fromkeys(acked, "completed")


@pytest.mark.timeout(90)
def test_postgres_stopped_under_load_503s_reads_go_on_and_it_recovers(
    tmp_path: Path, pg: PgServer
) -> None:
    outage(tmp_path, pg, down_s=3.0, rate=100.0)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_postgres_stopped_ten_seconds_under_load(tmp_path: Path, pg: PgServer) -> None:
    outage(tmp_path, pg, down_s=10.0, rate=300.0)
