"""A standby replica serves reads and forwards writes (``shim.http.standby``), end to
end: a real PostgreSQL, two router replicas, one CPU reference worker, on loopback.

A submission sent to the standby is forwarded to the leader and runs; the standby reads
its status and result from the store; another user's id is a missing one there too;
the standby refuses a missing or wrong key itself (401), and a forwarded answer is the
leader's (403, 404, quota and GPU reads). With ``journal.standby_ready`` its ``/health``
answers 200 (every replica behind the load balancer takes clients)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .procs import ADMIN, KEYS, free_port, hdr, router_config, start_worker
from .test_leader_e2e import TTL_S, health, leader_and_standby, pg, post  # noqa: F401
from .test_postgres_e2e import body, completed_at_workers, terminal

pytestmark = [pytest.mark.e2e]


@pytest.mark.timeout(120)
def test_a_standby_serves_reads_and_forwards_writes_to_the_leader(tmp_path: Path, pg) -> None:  # noqa: F811
    db = pg.create_database()
    ports = [free_port()]
    logs = [tmp_path / "jobs0.jsonl"]
    workers = [start_worker(0, ports[0], tmp_path, extra=["--job-log", str(logs[0])])]
    cfg = router_config(tmp_path, ports, journal={"lease_ttl_s": TTL_S, "standby_ready": True})
    with leader_and_standby(tmp_path, cfg, db, workers) as pair:
        a, url_a, b, url_b = pair.a, pair.url_a, pair.b, pair.url_b
        assert pair.standby["leader"] == url_a and pair.standby["ready"] is True
        assert health(url_b, b)[0] == 200  # standby_ready: the load balancer sends clients
        with httpx.Client(base_url=url_b, timeout=10) as c:
            r = post(c, url_b, "sb-1", "alice", 50)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["request_id"] == "sb-1"
            assert terminal(c, ["sb-1"], timeout_s=30) == {"sb-1": "completed"}
            r = c.get("/api/v1/requests/sb-1", headers=hdr(KEYS["alice"]))
            assert r.status_code == 200 and r.json()["data"]["status"] == "completed"
            res = c.get("/api/v1/requests/sb-1/result", headers=hdr(KEYS["alice"]))
            assert res.status_code == 200 and res.json()["data"]["status"] == "completed"
            # the same id of another user is a missing one, on the standby as on the leader
            for url in (url_a, url_b):
                other = httpx.get(f"{url}/api/v1/requests/sb-1", headers=hdr(KEYS["bob"]))
                assert other.status_code == 404, other.text
                missing = httpx.get(f"{url}/api/v1/requests/nope", headers=hdr(KEYS["bob"]))
                assert missing.json()["error"]["code"] == other.json()["error"]["code"]
            admin = c.get("/api/v1/requests/sb-1?user_id=alice", headers=hdr(ADMIN))
            assert admin.status_code == 200
            # authentication on the standby itself: no key, a wrong key (reads and writes)
            assert c.get("/api/v1/requests/sb-1").status_code == 401
            assert c.post("/api/v1/route", json={}).status_code == 401
            bad = {"authorization": "Bearer not-a-key-0123456789"}
            assert c.post("/api/v1/route", json={}, headers=bad).status_code == 401
            quota_put = c.put("/api/v1/admin/user/bob/quota", json={}, headers=hdr(KEYS["bob"]))
            assert quota_put.status_code == 403  # an admin path, a user key
            # forwarded: the leader's answers (a user key submitting as another user,
            # quota and GPU reads that live in the leader's memory)
            r = post(c, url_b, "sb-2", "alice", 10)
            assert r.status_code == 200
            spoof = c.post(
                "/api/v1/route", json=body("sb-3", "bob", 10), headers=hdr(KEYS["alice"])
            )
            assert spoof.status_code == 403, spoof.text
            q = c.get("/api/v1/user/alice/quota", headers=hdr(KEYS["alice"]))
            assert q.status_code == 200 and q.json()["data"]["user_id"] == "alice"
            g = c.get("/api/v1/gpus", headers=hdr(KEYS["alice"]))
            assert g.status_code == 200 and len(g.json()["data"]["gpus"]) == 1
            # a cancel through the standby reaches the leader
            cancel = c.delete("/api/v1/requests/sb-2", headers=hdr(KEYS["alice"]))
            assert cancel.status_code == 200 and "cancelled" in cancel.json()["data"]
        # the leader gone and no other replica: the standby's reads go on, writes 503
        a.kill()
        with httpx.Client(base_url=url_b, timeout=10) as c:
            r = c.get("/api/v1/requests/sb-1", headers=hdr(KEYS["alice"]))
            assert r.status_code == 200 and r.json()["data"]["status"] == "completed"
            w = post(c, url_b, "sb-4", "alice", 10)
            if w.status_code != 200:  # (unless it took the lease meanwhile: it leads)
                assert w.status_code == 503 and w.headers["retry-after"] == "1", w.text
    assert completed_at_workers(logs).get("sb-1") == 1
