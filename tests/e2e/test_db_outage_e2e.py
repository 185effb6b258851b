"""PostgreSQL stopped under three router replicas (a leader, two standbys with warm
copies, ``shim.store.pg_warm_copy``), end to end: a real server stopped with
``pg_ctl stop -m fast`` and started again on the same data directory, one CPU worker.

While it is down: the standbys answer status reads from their warm copies (200,
``x-gpu-router-read-from: warm-copy`` and how stale), an id a copy does not hold is 503
(not 404), writes answer 503 with ``Retry-After`` everywhere, and the leader, which
cannot renew its lease, exits (status 70) without another dispatch. Once the server is
back a replica takes the lease by itself and writes are served again; every request
acknowledged before the outage is in the database and completes once. The replica that
led, started again during the outage (as a supervisor would), answers 503 (``/health``
too: it has no copy) until the database is back, then stands by (or leads: it may take
the expired lease before the two standbys do)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_router.shim.http.leadership import FENCED_EXIT

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
            pg.stop("fast")
            stopped = time.monotonic()
            reads = writes = 0
            while time.monotonic() - stopped < down_s:
                for url in (url_b, url_c):
                    before = time.monotonic()
                    r = read(url, rids[reads % len(rids)])
                    after = time.monotonic()
                    assert r.status_code == 200, r.text
                    assert r.json()["data"]["status"] == "completed"
                    if r.headers["x-gpu-router-read-from"] == "warm-copy":
                        # as stale as it is: its last poll started after `synced` (seen
                        # on /health) and before the server stopped (ms, rounded)
                        stale = float(r.headers["x-gpu-router-stale-s"])
                        assert before - stopped - 0.002 <= stale, (stale, before - stopped)
                        assert stale <= after - synced[url] + 0.002, (stale, after - synced[url])
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
            # the leader could not renew: it stopped by itself (no dispatch after)
            assert a.p.wait(5) == FENCED_EXIT
            # started again (as a supervisor would) while the database is still down: it
            # serves, a standby with nothing to read from (503, and so says /health)
            a2, url_a2 = replica(tmp_path, "a2", cfg, db)
            try:
                wait_role(url_a2, a2, "standby")  # ("starting" until its store open fails)
                status, data = health(url_a2, a2)
                assert status == 503 and data["role"] == "standby" and data["reads"] is False
                r = read(url_a2, "o-0")
                assert r.status_code == 503 and "retry-after" in r.headers, r.text
                with httpx.Client(timeout=10) as cl:
                    w = post(cl, url_a2, "down-a2", "alice", 20)
                assert w.status_code == 503 and "retry-after" in w.headers, w.text
            except BaseException:
                a2.stop()
                raise
            pg.start()
            back = time.monotonic()
            took = None
            with httpx.Client(timeout=5) as cl:
                while time.monotonic() - back < 30:
                    r = post(
                        cl, (url_b, url_c)[int(time.monotonic() * 10) % 2], "after", "alice", 20
                    )
                    if r.status_code == 200:
                        took = time.monotonic() - back
                        break
                    assert r.status_code == 503, r.text
                    time.sleep(0.05)
            assert took is not None and took < TTL_S + 10.0, took
            figures |= {"reads_during": reads, "writes_503": writes, "recovery_s": took}
            # the replica that led opens the store once it is back: a standby of the new
            # leader (or the leader: it looks at the expired lease as soon as its store
            # opens, and may take it before b and c do; then they forward to it)
            try:
                now = serving(url_a2, a2)
                if now["role"] == "standby":
                    assert now["leader"] in (url_b, url_c) and now["reads"] is True
                else:
                    assert now["leader"] == url_a2 and now["epoch"] == 2, now
                with httpx.Client(timeout=10) as cl:
                    r = post(cl, url_a2, "via-a2", "alice", 20)  # forwarded to the leader
                    assert r.status_code == 200, r.text
                with httpx.Client(base_url=url_a2, timeout=10) as cl:
                    done = terminal(cl, [*rids, "after", "via-a2"], timeout_s=30)
                assert set(done.values()) == {"completed"}, done
            finally:
                a2.stop()
            in_db = stored(db)
            assert all(in_db[rid] == "completed" for rid in [*rids, "after", "via-a2"])
            assert not any(k.startswith("down-") for k in in_db)  # nothing 503'd was kept
            r = httpx.get(f"{url_b}/api/v1/requests/after", headers=hdr(ADMIN), timeout=5)
            assert r.status_code == 200
        finally:
            c.stop()
    ran = completed_at_workers(logs)
    assert all(ran[rid] == 1 for rid in [*rids, "after", "via-a2"]), ran
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
