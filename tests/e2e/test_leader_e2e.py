"""Two routers on one PostgreSQL store (``journal.lease_ttl_s``), end to end: real
processes on loopback, two CPU reference workers shared by both routers.

The first router takes the leader lease; the second is a standby (``/health`` 503 with
the leader's address; a submission sent to it is forwarded to the leader). The leader
is SIGKILLed with requests running; the standby takes the lease once it has expired,
loads the store, re-attaches to the workers' jobs and serves, within a few seconds;
every acknowledged
request completes, none runs twice (counted at the workers). Not the 20-kill campaign.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.shim.store.pg_server import PgServer, running_server

from .procs import ADMIN, KEYS, Proc, free_port, hdr, router_config, start_worker
from .test_postgres_e2e import body, completed_at_workers, terminal

pytestmark = [pytest.mark.e2e]

TTL_S = 2.0


@pytest.fixture
def pg() -> Iterator[PgServer]:
    yield from running_server()


def replica(tmp: Path, name: str, cfg: dict[str, Any], db: str) -> tuple[Proc, str]:
    port = free_port()
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = ["serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return Proc([*args, "--store", db], tmp / f"{name}.log"), f"http://127.0.0.1:{port}"


def health(url: str, proc: Proc, timeout_s: float = 30.0) -> tuple[int, dict[str, Any]]:
    """The first answer of ``/health`` (its status and data)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(proc.log_path.read_text()[-2000:])
        try:
            r = httpx.get(f"{url}/health", timeout=1.0)
            return r.status_code, r.json()["data"]
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(url)


def wait_role(url: str, proc: Proc, role: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _status, data = health(url, proc)
        if data.get("role") == role and (role == "standby" or data["ready"]):
            return data
        time.sleep(0.05)
    raise TimeoutError(f"{url} not {role}")


def post(c: httpx.Client, url: str, rid: str, user: str, ms: int) -> httpx.Response:
    return c.post(f"{url}/api/v1/route", json=body(rid, user, ms), headers=hdr(KEYS[user]))


@dataclass
class Replicas:
    """Replica ``a`` (the leader) and ``b`` (its standby), with their first ``/health`` data."""

    a: Proc
    url_a: str
    lead: dict[str, Any]
    b: Proc
    url_b: str
    standby: dict[str, Any]


@contextlib.contextmanager
def leader_and_standby(
    tmp: Path, cfg: dict[str, Any], db: str, workers: list[Proc]
) -> Iterator[Replicas]:
    """Start ``a`` until it leads, then ``b`` until it stands by; stop both and the workers."""
    a, url_a = replica(tmp, "a", cfg, db)
    b: Proc | None = None
    try:
        lead = wait_role(url_a, a, "leader")
        b, url_b = replica(tmp, "b", cfg, db)
        standby = wait_role(url_b, b, "standby")
        deadline = time.monotonic() + 30
        while standby["leader"] is None:  # (its store not open yet: it retries each second)
            assert time.monotonic() < deadline, standby
            time.sleep(0.05)
            standby = wait_role(url_b, b, "standby")
        yield Replicas(a, url_a, lead, b, url_b, standby)
        time.sleep(0.3)  # the workers' job logs are written
    finally:
        a.kill()
        if b is not None:
            b.stop()
        for w in workers:
            w.stop()


@pytest.mark.timeout(120)
def test_the_standby_takes_over_a_killed_leader_within_seconds(
    tmp_path: Path, pg: PgServer
) -> None:
    db = pg.create_database()
    ports = [free_port() for _ in range(2)]
    logs = [tmp_path / f"jobs{i}.jsonl" for i in range(2)]
    workers = [
        start_worker(i, p, tmp_path, extra=["--job-log", str(logs[i])]) for i, p in enumerate(ports)
    ]
    cfg = router_config(tmp_path, ports, journal={"lease_ttl_s": TTL_S})
    with leader_and_standby(tmp_path, cfg, db, workers) as pair:
        a, url_a, b, url_b = pair.a, pair.url_a, pair.b, pair.url_b
        assert pair.lead["epoch"] == 1 and pair.lead["leader"] == url_a
        assert pair.standby["leader"] == url_a and pair.standby["ready"] is False
        assert health(url_b, b)[0] == 503  # a load balancer sends nobody there
        users = list(KEYS)
        rids = [f"ha-{i}" for i in range(16)]
        with httpx.Client(timeout=10) as c:
            r = post(c, url_b, "x", "alice", 10)  # forwarded to the leader
            assert r.status_code == 200, r.text
            for n, rid in enumerate(rids):
                user = users[n % 3]
                r = post(c, url_a, rid, user, 400)
                assert r.status_code == 200, r.text
        time.sleep(0.3)  # some run on the workers, the rest are queued
        killed = time.monotonic()
        a.kill()
        took = None
        with httpx.Client(timeout=5) as c:
            while time.monotonic() - killed < 20:
                r = post(c, url_b, "after", "bob", 10)
                if r.status_code == 200:
                    took = time.monotonic() - killed
                    break
                time.sleep(0.05)
        assert took is not None and took < TTL_S + 3.0, took  # the TTL, then the start
        now = wait_role(url_b, b, "leader")
        assert now["epoch"] == 2 and now["leader"] == url_b
        with httpx.Client(base_url=url_b, timeout=10) as c:
            done = terminal(c, [*rids, "x", "after"])
            admin = c.get(f"/api/v1/requests/{rids[0]}", headers=hdr(ADMIN))
        assert admin.status_code == 200
        assert done == dict.fromkeys([*rids, "x", "after"], "completed")
        print(f"takeover: {took:.2f} s from the SIGKILL to the first 200 of the new leader")
    completions = completed_at_workers(logs)
    assert set(completions) == {*rids, "x", "after"}
    assert max(completions.values()) == 1  # nothing ran twice


@pytest.mark.timeout(120)
def test_a_paused_leader_wakes_up_fenced_and_steps_down(tmp_path: Path, pg: PgServer) -> None:
    db = pg.create_database()
    ports = [free_port()]
    logs = [tmp_path / "jobs0.jsonl"]
    workers = [start_worker(0, ports[0], tmp_path, extra=["--job-log", str(logs[0])])]
    cfg = router_config(tmp_path, ports, journal={"lease_ttl_s": TTL_S})
    with leader_and_standby(tmp_path, cfg, db, workers) as pair:
        a, url_a, b, url_b = pair.a, pair.url_a, pair.b, pair.url_b
        rids = [f"p-{i}" for i in range(6)]
        with httpx.Client(timeout=10) as c:
            for rid in rids:
                assert post(c, url_a, rid, "alice", 300).status_code == 200
        a.p.send_signal(signal.SIGSTOP)  # paused with work queued and running
        now = wait_role(url_b, b, "leader", timeout_s=TTL_S + 10)
        assert now["epoch"] == 2
        with httpx.Client(timeout=10) as c:
            assert post(c, url_b, "after", "bob", 10).status_code == 200
        a.p.send_signal(signal.SIGCONT)
        # it finds itself fenced and steps down in process: a standby of the new leader
        deadline = time.monotonic() + 10
        while True:
            _status, now_a = health(url_a, a)
            if now_a["role"] == "standby" and now_a.get("leader") == url_b:
                break
            assert time.monotonic() < deadline, now_a
            time.sleep(0.05)
        assert a.p.poll() is None
        assert "stepping down" in a.log_path.read_text()
        with httpx.Client(timeout=10) as c:
            assert post(c, url_a, "via-a", "carol", 10).status_code == 200  # forwarded
        with httpx.Client(base_url=url_b, timeout=10) as c:
            done = terminal(c, [*rids, "after", "via-a"])
        assert done == dict.fromkeys([*rids, "after", "via-a"], "completed")
        with httpx.Client(base_url=url_a, timeout=10) as c:  # its reads: the store's
            r = c.get("/api/v1/requests/after", headers=hdr(KEYS["bob"]))
        assert r.status_code == 200 and r.headers["x-gpu-router-read-from"] == "store"
    completions = completed_at_workers(logs)
    assert set(completions) == {*rids, "after", "via-a"}
    assert max(completions.values()) == 1  # nothing ran twice
