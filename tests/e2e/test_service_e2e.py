"""The router and three reference workers (CPU mode) as real processes on loopback."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .procs import (
    ADMIN,
    KEYS,
    free_port,
    hdr,
    router_config,
    start_router,
    start_worker,
    wait_http,
    wait_terminal,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    ports = [free_port() for _ in range(3)]
    procs = [start_worker(i, p, tmp, wait=False) for i, p in enumerate(ports)]
    for port, proc in zip(ports, procs, strict=True):
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
    yield {"ports": ports, "procs": procs, "tmp": tmp}
    for p in procs:
        p.stop()


def submit(client, n, *, duration_ms, prefix, users=("alice", "bob", "carol"), payload=None):
    acked = {}
    for i in range(n):
        user = users[i % len(users)]
        body = {
            "request_id": f"{prefix}-{i}",
            "user_id": user,
            "model_id": "mm",
            "priority": 1 + (i * 7) % 5,
            "type": "inference",
            "payload": payload or {},
            "resource_requirements": {"memory": 512, "expected_duration": duration_ms},
        }
        r = client.post("/api/v1/route", json=body, headers=hdr(KEYS[user]))
        assert r.status_code == 200, r.text
        acked[body["request_id"]] = r.json()["data"]
    return acked


def test_200_mixed_requests_all_terminal(workers, tmp_path):
    router, url = start_router(tmp_path, router_config(tmp_path, workers["ports"]))
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            acked = submit(c, 200, duration_ms=5, prefix="mix", payload={"iterations": 2})
            done = wait_terminal(c, list(acked), hdr(ADMIN))
            assert {d["status"] for d in done.values()} == {"completed"}
            assert {d["assigned_gpu"] for d in done.values()} == {"gpu-0", "gpu-1", "gpu-2"}
            m = c.get("/api/v1/metrics", headers=hdr(ADMIN)).json()["data"]["system"]
            assert m["completed_requests"] == 200 and m["failed_requests"] == 0
            r = c.get("/api/v1/requests/mix-0/result", headers=hdr(KEYS["alice"]))
            assert r.json()["data"]["result"]["device"]
    finally:
        router.stop()


def test_worker_sigkill_reroutes_and_marks_gpu_error(workers, tmp_path):
    router, url = start_router(tmp_path, router_config(tmp_path, workers["ports"]))
    victim = 1
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            acked = submit(c, 45, duration_ms=150, prefix="kw")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # wait until the victim runs something
                gpus = c.get("/api/v1/gpus", headers=hdr(ADMIN)).json()["data"]["gpus"]
                if gpus[victim]["active_requests"] > 0:
                    break
                time.sleep(0.02)
            workers["procs"][victim].kill()
            done = wait_terminal(c, list(acked), hdr(ADMIN))
            assert {d["status"] for d in done.values()} == {"completed"}  # nothing lost
            rerouted = [d for d in done.values() if d["retries"] > 0]
            assert rerouted and all(d["assigned_gpu"] != f"gpu-{victim}" for d in rerouted)
            gpus = c.get("/api/v1/gpus", headers=hdr(ADMIN)).json()["data"]["gpus"]
            assert gpus[victim]["status"] == "error"
            more = submit(c, 6, duration_ms=10, prefix="after")
            assert all(d["assigned_gpu"] != f"gpu-{victim}" for d in more.values())
            wait_terminal(c, list(more), hdr(ADMIN))
            workers["procs"][victim] = start_worker(
                victim, workers["ports"][victim], workers["tmp"]
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                gpus = c.get("/api/v1/gpus", headers=hdr(ADMIN)).json()["data"]["gpus"]
                if gpus[victim]["status"] == "active":
                    break
                time.sleep(0.05)
            assert gpus[victim]["status"] == "active"
    finally:
        router.stop()


def _journal(tmp_path):
    db = sqlite3.connect(f"file:{tmp_path / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT request_id, state, attempts, job_id, completion_time, user_id FROM requests"
            )
        }
    finally:
        db.close()


def test_router_sigkill_restart_loses_nothing_and_reruns_nothing(workers, tmp_path):
    for i, proc in enumerate(workers["procs"]):  # the previous test may have killed one
        if proc.p.poll() is not None:
            workers["procs"][i] = start_worker(i, workers["ports"][i], workers["tmp"])
    cfg = router_config(tmp_path, workers["ports"])
    port = free_port()
    router, url = start_router(tmp_path, cfg, port)
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            acked = submit(c, 60, duration_ms=100, prefix="rk")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = [v[0] for v in _journal(tmp_path).values()]
                if states.count("completed") >= 10:
                    break
                time.sleep(0.05)
        router.kill()
        before = _journal(tmp_path)
        finished = {k: v for k, v in before.items() if v[0] == "completed"}
        assert 10 <= len(finished) < 60
        router, url = start_router(tmp_path, cfg, port)
        with httpx.Client(base_url=url, timeout=10) as c:
            done = wait_terminal(c, list(acked), hdr(ADMIN))
            assert {d["status"] for d in done.values()} == {"completed"}  # nothing lost
            after = _journal(tmp_path)
            for rid, row in finished.items():
                assert after[rid] == row, rid  # not re-dispatched, not re-run
            for user, key in KEYS.items():
                q = c.get(f"/api/v1/user/{user}/quota", headers=hdr(key)).json()["data"]
                mine = [r for r in after.values() if r[4] is not None and r[-1] == user]
                assert q["quotas"]["concurrent_requests"]["used"] == 0
                used = q["rate_limits"]["requests_per_day"]["used"]
                assert used in (len(mine), len(mine) - 1), (user, used, len(mine))
    finally:
        router.stop()


def test_auth_matrix_live(workers, tmp_path):
    router, url = start_router(tmp_path, router_config(tmp_path, workers["ports"]))
    alice, bob, admin = hdr(KEYS["alice"]), hdr(KEYS["bob"]), hdr(ADMIN)
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            b = {
                "request_id": "am-1",
                "user_id": "alice",
                "model_id": "m",
                "priority": 2,
                "resource_requirements": {"expected_duration": 10},
            }
            assert c.post("/api/v1/route", json=b).status_code == 401
            assert c.post("/api/v1/route", json=b, headers=bob).status_code == 403
            assert c.post("/api/v1/route", json=b, headers=alice).status_code == 200
            for who, status in ((alice, 200), (admin, 200), (bob, 404)):
                assert c.get("/api/v1/requests/am-1", headers=who).status_code == status
            missing = c.get("/api/v1/requests/am-404", headers=bob)
            hidden = c.get("/api/v1/requests/am-1", headers=bob)
            assert missing.status_code == hidden.status_code == 404
            assert missing.json()["error"]["code"] == hidden.json()["error"]["code"]
            assert c.delete("/api/v1/requests/am-1", headers=bob).status_code == 404
            admin_paths = [
                ("POST", "/api/v1/admin/gpu/gpu-0/maintenance"),
                ("POST", "/api/v1/admin/gpu/gpu-0/restart"),
                ("DELETE", "/api/v1/admin/request/am-1"),
                ("PUT", "/api/v1/admin/user/alice/quota"),
            ]
            for (method, path), who in itertools.product(admin_paths, (alice, bob)):
                assert c.request(method, path, json={}, headers=who).status_code == 403
            r = c.put(
                "/api/v1/admin/user/alice/quota", json={"priority_requests_limit": 2}, headers=admin
            )
            assert r.status_code == 200
            assert c.delete("/api/v1/admin/request/am-1", headers=admin).status_code == 200
    finally:
        router.stop()


def test_invalid_config_refuses_to_start(tmp_path):

    bad = tmp_path / "bad.yaml"
    bad.write_text("api:\n  port: 99999\n")
    p = subprocess.run(
        [sys.executable, "-m", "gpu_router.cli", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "api.port" in p.stderr
    good = tmp_path / "good.yaml"
    good.write_text("api:\n  port: 8123\n")
    env = {**os.environ, "API_PORT": "not-a-port"}
    p = subprocess.run(
        [sys.executable, "-m", "gpu_router.cli", "serve", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert p.returncode == 2 and "api.port" in p.stderr and "not-a-port" in p.stderr


def journal_writers(pid: int) -> list[int]:
    """The journal writer processes among ``pid``'s children (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if (
                    b"gpu_router.shim.store.writer_process"
                    in Path(f"/proc/{child}/cmdline").read_bytes()
                ):
                    out.append(int(child))
    return out


def exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def _intake_logged(journal_path) -> set[str]:
    from gpu_router.shim.store import intake_log

    return intake_log.logged_ids(str(journal_path))


def test_group_commit_acknowledged_survives_sigkill_right_after_the_200(tmp_path):
    """Requests race a SIGKILL sent the moment the 30th 200 arrives: every request that was
    answered 200 was durable before its answer, in the journal or in its intake log (the
    default: a new row is appended to the log and committed to SQLite up to 20 ms later),
    and the restarted router has each of them in its journal and runs it to the end."""
    import asyncio

    cfg = router_config(tmp_path, None, journal={"commit_delay_ms": 300.0})
    port = free_port()
    router, url = start_router(tmp_path, cfg, port)
    writers = journal_writers(router.p.pid)
    assert len(writers) == 1  # the router commits through its writer process
    acked: list[str] = []

    async def race() -> None:
        killed = asyncio.Event()

        async def one(c: httpx.AsyncClient, i: int) -> None:
            user = ("alice", "bob", "carol")[i % 3]
            body = {
                "request_id": f"gc-{i}",
                "user_id": user,
                "model_id": "mm",
                "priority": 1 + i % 5,
                "resource_requirements": {"memory": 512, "expected_duration": 200},
            }
            try:
                r = await c.post("/api/v1/route", json=body, headers=hdr(KEYS[user]))
            except httpx.HTTPError:
                return  # the router died first: not acknowledged, nothing promised
            if r.status_code == 200 and not killed.is_set():
                acked.append(body["request_id"])
                if len(acked) == 30:
                    router.p.send_signal(signal.SIGKILL)  # at once, from the event loop
                    killed.set()

        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            await asyncio.gather(*(one(c, i) for i in range(120)))

    try:
        asyncio.run(race())
        router.kill()
        assert len(acked) >= 30
        deadline = time.monotonic() + 10  # the writer dies with the router: a restarted
        while not exited(writers[0]) and time.monotonic() < deadline:  # one never shares
            time.sleep(0.05)  # the journal with an old writer
        assert exited(writers[0])
        keys = set(_journal(tmp_path)) | _intake_logged(tmp_path / "journal.sqlite3")
        durable = {k.split("/", 1)[0] for k in keys}  # keys are <request_id>/<user_id>
        missing = [rid for rid in acked if rid not in durable]
        assert not missing, f"acknowledged but not durable: {missing[:5]}"
        router, url = start_router(tmp_path, cfg, port)
        journaled = {k.split("/", 1)[0] for k in _journal(tmp_path)}  # the log's rows, copied
        assert not [rid for rid in acked if rid not in journaled]
        assert not _intake_logged(tmp_path / "journal.sqlite3")
        with httpx.Client(base_url=url, timeout=10) as c:
            done = wait_terminal(c, acked, hdr(ADMIN))
            assert {d["status"] for d in done.values()} == {"completed"}
    finally:
        router.stop()


def test_forwarded_for_is_believed_only_from_configured_proxies(tmp_path):
    """A caller on loopback that writes X-Forwarded-For cannot pose as a trusted network;
    with the proxy listed in api.forwarded_allow_ips, the header is the client address."""
    net = {"trusted_networks": [{"cidr": "10.0.0.0/8", "user_id": "netuser", "role": "user"}]}
    spoof = {"x-forwarded-for": "10.1.2.3"}
    for proxies, expected in (([], 401), (["127.0.0.1"], 200)):
        cfg = router_config(tmp_path, None)
        cfg["auth"] = {**cfg["auth"], **net}
        cfg["api"] = {"forwarded_allow_ips": proxies}
        router, url = start_router(tmp_path, cfg)
        try:
            r = httpx.get(f"{url}/api/v1/user/netuser/quota", headers=spoof, timeout=10)
            assert r.status_code == expected, (proxies, r.text)
        finally:
            router.stop()
