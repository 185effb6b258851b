"""PostgreSQL stopped under three router replicas (a leader, two standbys with warm
copies, ``shim.store.pg_warm_copy``), end to end: a real server stopped with
``pg_ctl stop -m fast`` and started again on the same data directory, one CPU worker.

While it is down: the standbys answer status reads from their warm copies (200,
``x-gpu-router-read-from: warm-copy`` and how stale), an id a copy does not hold is 503
(not 404), writes answer 503 with ``Retry-After`` everywhere, and the leader, which
cannot renew its lease, steps down in process without another dispatch: it does not
exit, and answers the same reads from a warm copy seeded with its own records (200,
``warm-copy``, how stale). Once the server is back a replica takes the lease by itself
and writes are served again; the replica that led rejoins by itself (a standby of the
new leader, or the leader again); every request acknowledged before the outage is in
the database and completes once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .procs import ADMIN, KEYS, Proc, free_port, hdr, router_config, start_worker
from .test_leader_e2e import TTL_S, health, leader_and_standby, pg, post, replica, wait_role  # noqa: F401
from .test_postgres_e2e import completed_at_workers, stored, terminal

pytestmark = [pytest.mark.e2e]


def read(url: str, rid: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/requests/{rid}", headers=hdr(KEYS["alice"]), timeout=5)


def synced_after(url: str, proc: Proc, since: float, timeout_s: float = 30.0) -> float:
    """Wait until the warm copy of the standby at ``url`` has polled the store (a poll that
    started) after ``since`` (monotonic s); a moment (monotonic s) before that poll started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        asked = time.monotonic()
        _status, data = health(url, proc)
        age = data.get("warm_copy", {}).get("age_s")
        # the poll started `age` (rounded to ms) before /health answered, after `asked`
        if age is not None and asked - age - 0.001 > since:
            return asked - age - 0.001
        time.sleep(0.05)
    raise TimeoutError(f"{url}: the warm copy has not polled since {since}")


def serving(url: str, proc: Proc, timeout_s: float = 30.0) -> dict[str, Any]:
    """``/health`` data once the replica at ``url`` is a standby that knows its leader,
    or the leader, ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _status, data = health(url, proc)
        if data.get("role") == "standby" and data.get("leader") is not None:
            return data
        if data.get("role") == "leader" and data["ready"]:
            return data
        time.sleep(0.1)  # (its store opens within a second, then the lease)
    raise TimeoutError(f"{url} neither a standby with a leader nor the leader")


def outage(tmp_path: Path, pg, down_s: float) -> dict[str, float]:  # noqa: F811
    """The scenario; a few figures of it (for the slow variant's log)."""
    db = pg.create_database()
    ports = [free_port()]
    logs = [tmp_path / "jobs0.jsonl"]
    workers = [start_worker(0, ports[0], tmp_path, extra=["--job-log", str(logs[0])])]
    journal = {"lease_ttl_s": TTL_S, "standby_ready": True, "warm_poll_ms": 50}
    cfg = router_config(tmp_path, ports, journal=journal)
    figures: dict[str, float] = {}
    with leader_and_standby(tmp_path, cfg, db, workers) as pair:
        a, url_a, b, url_b = pair.a, pair.url_a, pair.b, pair.url_b
        c, url_c = replica(tmp_path, "c", cfg, db)
        try:
            wait_role(url_c, c, "standby")
            rids = [f"o-{i}" for i in range(8)]
            with httpx.Client(timeout=10) as cl:
                for n, rid in enumerate(rids):
                    r = post(cl, (url_a, url_b, url_c)[n % 3], rid, "alice", 20)
                    assert r.status_code == 200, r.text
            with httpx.Client(base_url=url_b, timeout=10) as cl:
                assert terminal(cl, rids, timeout_s=30) == dict.fromkeys(rids, "completed")
            # the copies hold them: each standby's copy has polled since they completed
            synced = {url: synced_after(url, proc, time.monotonic()) for url, proc in
                      ((url_b, b), (url_c, c))}  # fmt: skip
            assert read(url_c, "o-0").headers["x-gpu-router-read-from"] == "store"
            stop_sent = time.monotonic()
            pg.stop("fast")
            stopped = time.monotonic()
            reads = writes = 0
            while time.monotonic() - stopped < down_s:
                for url in (url_a, url_b, url_c):  # (a: the leader, then a standby)
                    before = time.monotonic()
                    r = read(url, rids[reads % len(rids)])
                    after = time.monotonic()
                    assert r.status_code == 200, (url, r.text)
                    assert r.json()["data"]["status"] == "completed"
                    if r.headers.get("x-gpu-router-read-from") == "warm-copy":
                        stale = float(r.headers["x-gpu-router-stale-s"])
                        if url in synced:
                            # a standby's copy is as stale as it is: its last poll started
                            # after `synced` (seen on /health) and before the server
                            # stopped (ms, rounded)
                            assert before - stopped - 0.002 <= stale, (url, stale)
                            assert stale <= after - synced[url] + 0.002, (url, stale)
                        else:  # the ex-leader's, seeded at its step-down (after the stop)
                            assert stale < after - stop_sent + 1.5, (url, stale)
                    reads += 1
                    with httpx.Client(timeout=10) as cl:
                        w = post(cl, url, f"down-{writes}", "alice", 20)
                    assert w.status_code == 503, w.text
                    assert int(w.headers["retry-after"]) >= 1
                    writes += 1
                time.sleep(0.1)
            assert read(url_b, "o-1").headers["x-gpu-router-read-from"] == "warm-copy"
            unknown = read(url_c, "never-submitted")
            assert unknown.status_code == 503 and "retry-after" in unknown.headers
            status, data = health(url_b, b)
            assert status == 200 and data["warm_copy"]["store_reachable"] is False
            # the leader could not renew: it stepped down by itself, in process (no
            # dispatch after), and answers reads from its own records meanwhile
            assert a.p.poll() is None, "the leader exited instead of stepping down"
            status, data = health(url_a, a)
            assert data["role"] == "standby" and data["reads"] is True, data
            assert data["warm_copy"]["store_reachable"] is False, data
            for rid in rids:
                r = read(url_a, rid)
                assert r.status_code == 200, r.text
                assert r.json()["data"]["status"] == "completed"
                assert r.headers["x-gpu-router-read-from"] == "warm-copy"
                assert 0.0 <= float(r.headers["x-gpu-router-stale-s"]) < down_s + 5.0
            unknown = read(url_a, "never-submitted")
            assert unknown.status_code == 503 and "retry-after" in unknown.headers
            with httpx.Client(timeout=10) as cl:
                w = post(cl, url_a, "down-a", "alice", 20)
            assert w.status_code == 503 and "retry-after" in w.headers, w.text
            pg.start()
            back = time.monotonic()
            took = None
            with httpx.Client(timeout=5) as cl:
                while time.monotonic() - back < 30:
                    at = (url_a, url_b, url_c)[int(time.monotonic() * 10) % 3]
                    r = post(cl, at, "after", "alice", 20)
                    if r.status_code == 200:
                        took = time.monotonic() - back
                        break
                    assert r.status_code == 503, r.text
                    time.sleep(0.05)
            assert took is not None and took < TTL_S + 10.0, took
            figures |= {"reads_during": reads, "writes_503": writes, "recovery_s": took}
            # the replica that led rejoins by itself: its store opens again, then it is a
            # standby of the new leader (or the leader again), reading from the store
            now = serving(url_a, a)
            if now["role"] == "standby":
                assert now["leader"] in (url_b, url_c) and now["reads"] is True, now
            else:  # it looked at the expired lease first and took it
                assert now["leader"] == url_a and now["epoch"] == 2, now
            assert read(url_a, "o-0").headers.get("x-gpu-router-read-from") in ("store", None)
            with httpx.Client(timeout=10) as cl:
                r = post(cl, url_a, "via-a", "alice", 20)  # forwarded to the leader, or led
                assert r.status_code == 200, r.text
            with httpx.Client(base_url=url_a, timeout=10) as cl:
                done = terminal(cl, [*rids, "after", "via-a"], timeout_s=30)
            assert set(done.values()) == {"completed"}, done
            assert a.p.poll() is None
            in_db = stored(db)
            assert all(in_db[rid] == "completed" for rid in [*rids, "after", "via-a"])
            assert not any(k.startswith("down-") for k in in_db)  # nothing 503'd was kept
            r = httpx.get(f"{url_b}/api/v1/requests/after", headers=hdr(ADMIN), timeout=5)
            assert r.status_code == 200
        finally:
            c.stop()
    ran = completed_at_workers(logs)
    assert all(ran[rid] == 1 for rid in [*rids, "after", "via-a"]), ran
    return figures


@pytest.mark.timeout(180)
def test_reads_go_on_from_the_standbys_while_postgres_is_stopped(tmp_path: Path, pg) -> None:  # noqa: F811
    outage(tmp_path, pg, down_s=4.0)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_ten_second_postgres_outage(tmp_path: Path, pg) -> None:  # noqa: F811
    figures = outage(tmp_path, pg, down_s=10.0)
    print("db outage figures", figures)
    assert figures["reads_during"] > 20 and figures["writes_503"] > 20
