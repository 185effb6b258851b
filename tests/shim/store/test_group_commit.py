"""Group commit: staged journal writes, one transaction per batch, acknowledgements that
wait for their batch, and what the service keeps in memory once requests finish."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gpu_router.shim.store import intake_log
from gpu_router.shim.store.batch import Staging
from gpu_router.shim.store.group_commit import GroupCommit
from gpu_router.shim.store.journal import Journal
from gpu_router.shim.store.records import DuplicateRequest, JournalError
from gpu_router.shim.store.sqlite_store import SqliteStore

from ..app_helpers import H_ALICE, body, router_idle, running, wait_state
from .test_journal import rec

pytestmark = pytest.mark.timeout(30)


def committed(path) -> dict[str, str]:
    other = sqlite3.connect(path)
    try:
        return dict(other.execute("SELECT request_id, state FROM requests"))
    finally:
        other.close()


def logged(path) -> set[str]:
    return intake_log.logged_ids(str(path))


def commit(j: Journal, staging: Staging) -> None:
    """Commit what is staged in one transaction (on this thread) and tell its waiters."""
    for done, fate in j.commit_batch(staging.take()):
        done(fate)


def test_staged_writes_commit_together_and_updates_coalesce(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    s = Staging()
    fates: list[JournalError | None] = []
    records = [rec(f"r{i}") for i in range(3)]
    for r in records:
        s.insert(r, fates.append)
    assert committed(path) == {} and len(s) == 3  # nothing visible before the commit
    commit(j, s)
    assert fates == [None, None, None] and j.batches == 1
    assert committed(path) == {"r0": "queued", "r1": "queued", "r2": "queued"}
    r = records[0]
    for state in ("processing", "completed"):  # two changes, one row write
        r.state = state
        s.update(r)
    r.result = {"y": 2}
    s.update(r)
    assert len(s) == 1
    commit(j, s)
    assert j.get("r0").result == {"y": 2}
    assert committed(path)["r0"] == "completed" and j.batches == 2
    j.close()


def test_duplicate_insert_fails_alone_and_leaves_the_old_row(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    j.insert(rec("old", "completed"))
    fates: dict[str, JournalError | None] = {}
    s = Staging()
    dup, new = rec("old"), rec("new")
    s.insert(dup, lambda e: fates.__setitem__("old", e))
    s.update(dup)  # must not overwrite the old request's row
    s.insert(new, lambda e: fates.__setitem__("new", e))
    commit(j, s)
    assert isinstance(fates["old"], DuplicateRequest) and fates["new"] is None
    assert j.get("old").state == "completed" and j.get("new").state == "queued"
    j.close()


def test_a_failed_batch_fails_every_waiter_and_reports_lost_updates(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    j.insert(rec("r0"))
    lost: list[list[str]] = []
    j.on_lost = lost.append
    fates: list[JournalError | None] = []
    s = Staging()
    s.insert(rec("r1"), fates.append)
    s.update(rec("r0", "completed"))
    j._db.execute("PRAGMA query_only=ON")  # every write of the batch now fails
    commit(j, s)
    j._db.execute("PRAGMA query_only=OFF")
    assert len(fates) == 1 and isinstance(fates[0], JournalError)
    assert lost and "r0" in lost[0][0]
    assert j.get("r1") is None and j.get("r0").state == "queued"
    j.close()


def test_group_commit_batches_acknowledgements_within_its_delay(tmp_path):
    async def scenario():
        j = Journal(tmp_path / "j.sqlite3")
        gc = GroupCommit(j, delay_s=0.05, lazy_delay_s=0.5)
        futs = [gc.insert(rec(f"r{i}")) for i in range(5)]
        await asyncio.sleep(0)
        assert not any(f.done() for f in futs) and j.batches == 0
        await asyncio.gather(*futs)
        assert j.batches == 1  # five acknowledgements, one commit
        r = rec("r0", "completed")
        gc.update(r)  # nobody waits: it rides the next batch, at the latest lazy_delay_s
        late = gc.insert(rec("r9"))
        await late
        assert j.batches == 2 and committed(tmp_path / "j.sqlite3")["r0"] == "completed"
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_max_batch_is_handed_over_at_once(tmp_path):
    async def scenario():
        j = Journal(tmp_path / "j.sqlite3")
        gc = GroupCommit(j, delay_s=10.0, max_batch=3)
        futs = [gc.insert(rec(f"r{i}")) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(*futs), 2.0)  # not 10 s
        assert j.batches == 1
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_without_a_writer_process_batches_commit_on_the_loop_and_reads_wait(tmp_path):
    async def scenario():
        j = Journal(tmp_path / "j.sqlite3")
        gc = GroupCommit(j)  # no writer process: committed when handed over
        store = SqliteStore(j, gc)
        threads: list[str] = []
        real = j.commit_batch

        def spy(batch):
            threads.append(threading.current_thread().name)
            return real(batch)

        j.commit_batch = spy
        futs = [gc.insert(rec(f"r{i}")) for i in range(3)]
        assert all(f.done() and f.result() is None for f in futs)  # committed, each at once
        assert threads == [threading.current_thread().name] * 3 and j.batches == 3
        assert not gc.writer_process_alive and not store.writer_alive
        r = rec("r0", "completed")
        store.update(r)  # staged, not yet handed over: a read waits for it
        assert committed(tmp_path / "j.sqlite3")["r0"] == "queued"
        assert store.get("r0").state == "completed"
        assert committed(tmp_path / "j.sqlite3") == {
            "r0": "completed",
            "r1": "queued",
            "r2": "queued",
        }
        store.close()
        store.close()  # (a second close does nothing)

    asyncio.run(scenario())


def test_an_unexpected_error_in_a_commit_fails_its_batch_and_the_writer_goes_on(tmp_path):
    async def scenario():
        j = Journal(tmp_path / "j.sqlite3")
        gc = GroupCommit(j)
        real = j.commit_batch
        calls = []

        def once_broken(batch):
            calls.append(len(batch))
            if len(calls) == 1:
                raise RuntimeError("boom")
            return real(batch)

        j.commit_batch = once_broken
        with pytest.raises(JournalError, match="boom"):
            await asyncio.wait_for(gc.insert(rec("r0")), 2.0)
        await asyncio.wait_for(gc.insert(rec("r1")), 2.0)  # the writer is still there
        assert committed(tmp_path / "j.sqlite3") == {"r1": "queued"}
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_a_large_batch_with_a_duplicate_in_the_middle(tmp_path):
    """The duplicate fails alone, and the update of it merged from a later hand-over does
    not overwrite the old request's row."""
    j = Journal(tmp_path / "j.sqlite3")
    j.insert(rec("r300", "completed"))
    fates: dict[str, JournalError | None] = {}
    records = [rec(f"r{i}") for i in range(600)]
    s = Staging()
    for r in records:
        s.insert(r, lambda e, rid=r.request_id: fates.__setitem__(rid, e))
    batch = s.take()
    for r in [*records[:10], records[300]]:
        r.state = "processing"
        s.update(r)
    batch.extend(s.take())  # a later hand-over merged by the writer
    assert len(batch.inserts) == 600 and len(batch.updates) == 11
    for done, fate in j.commit_batch(batch):  # one transaction, multi-row statements
        done(fate)
    assert isinstance(fates.pop("r300"), DuplicateRequest)
    assert set(fates.values()) == {None} and len(fates) == 599
    rows = committed(tmp_path / "j.sqlite3")
    assert len(rows) == 600 and rows["r300"] == "completed"
    assert [rows[f"r{i}"] for i in (0, 9, 10, 599)] == ["processing"] * 2 + ["queued"] * 2
    j.close()


@pytest.mark.parametrize("intake", [True, False])
def test_the_answer_waits_for_the_commit_and_finished_requests_are_forgotten(tmp_path, intake):
    """With the intake log (the default) the row is in the log before the answer, and
    committed soon after; without it, committed before the answer. (Rows are keyed
    ``<request_id>/<user_id>``.)"""
    path = tmp_path / "journal.sqlite3"
    jc = {"commit_delay_ms": 50.0, "intake_log": intake}

    async def scenario():
        async with running(str(path), journal=jc) as (c, app, _fleet):
            svc = app.state.service
            assert svc.store.commits.intake is intake
            r = await c.post("/api/v1/route", json=body(request_id="ack-1"), headers=H_ALICE)
            assert r.status_code == 200
            if intake:  # durable before the answer was sent: in the log, or committed
                assert "ack-1/alice" in logged(path) | set(committed(path))
            else:
                assert "ack-1/alice" in committed(path)  # committed before the answer was sent
            await wait_state(c, "ack-1", {"completed"}, H_ALICE)
            assert (
                svc.router.state_of("ack-1/alice") is None
                and "ack-1/alice" not in svc.requests.live
            )  # forgotten
            svc.requests.recent.clear()  # the status API falls back to the journal
            d = (await c.get("/api/v1/requests/ack-1", headers=H_ALICE)).json()["data"]
            assert d["status"] == "completed"
            again = await c.post("/api/v1/route", json=body(request_id="ack-1"), headers=H_ALICE)
            assert again.status_code == 200  # found through the journal's duplicate row
            assert again.json()["data"]["assigned_gpu"] == r.json()["data"]["assigned_gpu"]
            other = await c.post(
                "/api/v1/route", json=body(request_id="ack-1", priority=5), headers=H_ALICE
            )
            assert other.status_code == 409
            assert committed(path) == {"ack-1/alice": "completed"}  # the old row is untouched
            assert not svc.requests.live and router_idle(svc)  # the duplicates left nothing behind

    asyncio.run(scenario())


def test_resumed_requests_are_not_refused_by_their_own_quota(tmp_path):
    path = str(tmp_path / "journal.sqlite3")
    quota = {"user_quota_manager": {"requests_per_minute": 2}}

    async def scenario():
        fleet_kw = {"n_gpus": 1}
        async with running(path, **fleet_kw, **quota) as (c, app, _):
            for rid in ("q-1", "q-2"):
                long = body(request_id=rid, payload={"simulate": {"duration_ms": 300}})
                r = await c.post("/api/v1/route", json=long, headers=H_ALICE)
                assert r.status_code == 200
            svc = app.state.service
            for t in svc._loops:  # a crash: nothing more is written
                t.cancel()
            for t in list(svc.dispatcher.tasks.values()):
                t.cancel()
            svc.dispatcher.local.clear()  # in-process jobs: their ends go unheard
            svc.store.journal.commit_batch = lambda batch: []
        async with running(path, **fleet_kw, **quota) as (c, app, _):
            for rid in ("q-1", "q-2"):  # the minute's two requests are these two: resumed
                d = await wait_state(c, rid, {"completed", "failed"}, H_ALICE)
                assert d["status"] == "completed", d
            r = await c.post("/api/v1/route", json=body(request_id="q-3"), headers=H_ALICE)
            assert r.status_code == 429  # yet they still count against the rate limit

    asyncio.run(scenario())


def test_route_errors_are_answered_in_the_envelope():
    async def scenario():
        async with running() as (c, app, _fleet):
            svc = app.state.service

            async def broken(req, trace):
                raise RuntimeError("boom")

            svc.submit = broken
            r = await c.post("/api/v1/route", json=body(request_id="fp-1"), headers=H_ALICE)
            assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
            assert "boom" not in r.text and "Traceback" not in r.text
            r = await c.post("/api/v1/route", json=body(), headers={})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert (await c.get("/api/v1/route")).status_code == 405  # through Starlette

    asyncio.run(scenario())
