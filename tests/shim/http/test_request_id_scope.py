"""Request ids are unique per user (issue 14): users neither see nor block each other's
ids, another user's id answers exactly as a missing one, in body and in time, and a
journal from before per-user ids is migrated."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time

import pytest

from gpu_router.shim.store import JournalRecord, request_key
from gpu_router.shim.store.journal import Journal

from ..app_helpers import H_ADMIN, H_ALICE, H_BOB, body, running, wait_state

pytestmark = pytest.mark.timeout(60)


def test_two_users_may_use_one_request_id_and_neither_blocks_the_other():
    async def scenario():
        async with running() as (c, _app, _fleet):
            a = await c.post("/api/v1/route", json=body(request_id="same-1"), headers=H_ALICE)
            assert a.status_code == 200
            b_body = body(request_id="same-1", user_id="bob", priority=5)
            b = await c.post("/api/v1/route", json=b_body, headers=H_BOB)
            assert b.status_code == 200, b.text  # not 409: the id is bob's own
            assert b.json()["data"]["request_id"] == "same-1"
            mine = (await c.get("/api/v1/requests/same-1", headers=H_ALICE)).json()["data"]
            theirs = (await c.get("/api/v1/requests/same-1", headers=H_BOB)).json()["data"]
            assert (mine["user_id"], mine["priority"]) == ("alice", 3)
            assert (theirs["user_id"], theirs["priority"]) == ("bob", 5)
            await wait_state(c, "same-1", {"completed"}, H_ALICE)
            await c.delete("/api/v1/requests/same-1", headers=H_ALICE)
            again = await c.post("/api/v1/route", json=body(request_id="same-1"), headers=H_ALICE)
            assert again.status_code == 200 and "original" in again.json()["data"]["message"]
            other = body(request_id="same-1", priority=1)
            assert (await c.post("/api/v1/route", json=other, headers=H_ALICE)).status_code == 409
            # an admin names the user, or gets the last submitted one
            q = "/api/v1/requests/same-1?user_id=alice"
            assert (await c.get(q, headers=H_ADMIN)).json()["data"]["user_id"] == "alice"
            latest = (await c.get("/api/v1/requests/same-1", headers=H_ADMIN)).json()["data"]
            assert latest["user_id"] == "bob"
            # a user key cannot reach another user's request with ?user_id=
            r = await c.get("/api/v1/requests/same-1?user_id=bob", headers=H_ALICE)
            assert r.json()["data"]["user_id"] == "alice"

    asyncio.run(scenario())


def test_an_id_another_user_cancelled_never_blocks_this_user():
    """The finding: Bob submitting Alice's id got 409 while a GET gave 404, and the id
    stayed blocked after Alice cancelled. Alice's request is cancelled while it runs."""

    async def scenario():
        async with running() as (c, _app, _fleet):
            long = body(request_id="taken-1", payload={"simulate": {"duration_ms": 5000}})
            assert (await c.post("/api/v1/route", json=long, headers=H_ALICE)).status_code == 200
            await wait_state(c, "taken-1", {"processing"}, H_ALICE)
            r = await c.delete("/api/v1/requests/taken-1", headers=H_ALICE)
            assert r.status_code == 200, r.text
            await wait_state(c, "taken-1", {"cancelled"}, H_ALICE)
            assert (await c.get("/api/v1/requests/taken-1", headers=H_BOB)).status_code == 404
            mine = body(request_id="taken-1", user_id="bob", priority=4)
            r = await c.post("/api/v1/route", json=mine, headers=H_BOB)
            assert r.status_code == 200, r.text  # neither 409 nor blocked
            done = await wait_state(c, "taken-1", {"completed"}, H_BOB)
            assert (done["user_id"], done["priority"]) == ("bob", 4)
            alice = (await c.get("/api/v1/requests/taken-1", headers=H_ALICE)).json()["data"]
            assert alice["status"] == "cancelled"

    asyncio.run(scenario())


def test_another_users_id_answers_as_a_missing_one_in_body_and_in_time():
    """GET timed over 300 pairs (another user's id and a missing one, in turn first). The
    two are one code path (the caller's own key is looked up: a miss in memory, then one SELECT on
    the primary key that finds nothing), so only noise separates them. The median of the
    paired differences cancels the drift of a shared machine's load, which medians taken
    apart do not (seen: 7% apart on one run). The finding was 400 vs 443 us, a gap of
    10%; the tolerance, 5% of the missing id's median, is half of that."""

    async def scenario():
        async with running() as (c, _app, _fleet):
            r = await c.post("/api/v1/route", json=body(request_id="secret-1"), headers=H_ALICE)
            assert r.status_code == 200
            await wait_state(c, "secret-1", {"completed"}, H_ALICE)
            # alice's record stays in memory (recently finished), as in the finding
            theirs = await c.get("/api/v1/requests/secret-1", headers=H_BOB)
            missing = await c.get("/api/v1/requests/secret-2", headers=H_BOB)
            assert theirs.status_code == missing.status_code == 404
            t_err, m_err = theirs.json()["error"], missing.json()["error"]
            assert t_err["code"] == m_err["code"] and t_err["message"].replace(
                "secret-1", "X"
            ) == m_err["message"].replace("secret-2", "X")
            skip = {"x-request-id", "traceparent", "content-length"}
            assert {k for k in theirs.headers if k not in skip} == {
                k for k in missing.headers if k not in skip
            }
            times: dict[str, list[float]] = {"secret-1": [], "secret-2": []}  # s
            for _ in range(20):  # warm-up
                await c.get("/api/v1/requests/secret-1", headers=H_BOB)
            for n in range(300):  # which goes first alternates (the first of two is slower)
                for rid in ("secret-1", "secret-2") if n % 2 else ("secret-2", "secret-1"):
                    t = time.perf_counter()
                    await c.get(f"/api/v1/requests/{rid}", headers=H_BOB)
                    times[rid].append(time.perf_counter() - t)
            return times

    times = asyncio.run(scenario())
    missing = statistics.median(times["secret-2"])
    gap = statistics.median(
        a - b for a, b in zip(times["secret-1"], times["secret-2"], strict=True)
    )
    print(f"GET: missing id median {missing * 1e6:.1f} us, paired gap {gap * 1e6:+.1f} us")
    assert abs(gap) <= 0.05 * missing, (gap, missing)


def test_a_journal_from_before_per_user_ids_is_migrated(tmp_path):
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    old = JournalRecord(
        request_id="old-1",  # a bare id: the key before per-user ids
        user_id="alice",
        model_id="m",
        priority=3,
        body=body(request_id="old-1"),
        body_hash="h",
        answer={"request_id": "old-1", "status": "accepted"},
        state="completed",
        submitted_at=time.time(),
        start_time=time.time(),
        completion_time=time.time(),
        result={"ok": 1},
    )
    j.insert(old)
    j.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 0")  # as a journal made before
    db.commit()
    db.close()

    async def scenario():
        async with running(str(path)) as (c, app, _fleet):
            assert app.state.service.store.get(request_key("alice", "old-1")) is not None
            d = (await c.get("/api/v1/requests/old-1", headers=H_ALICE)).json()["data"]
            assert d["request_id"] == "old-1" and d["status"] == "completed"
            r = await c.get("/api/v1/requests/old-1/result", headers=H_ALICE)
            assert r.json()["data"]["result"] == {"ok": 1}
            assert (await c.get("/api/v1/requests/old-1", headers=H_BOB)).status_code == 404
            b_body = body(request_id="old-1", user_id="bob")
            assert (await c.post("/api/v1/route", json=b_body, headers=H_BOB)).status_code == 200

    asyncio.run(scenario())
    again = Journal(path)  # reopening migrates nothing twice
    assert again.get("old-1/alice") is not None and not again.migrated
    again.close()
