"""The intake log: new requests made durable by one append and acknowledged at once,
committed to SQLite by the writer process later, and replayed after a crash."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_router.shim.store import intake_log
from gpu_router.shim.store.group_commit import GroupCommit
from gpu_router.shim.store.intake_log import IntakeLog
from gpu_router.shim.store.journal import Journal
from gpu_router.shim.store.records import DuplicateRequest, JournalError
from gpu_router.shim.store.rows import COLUMNS, row_values

from ..app_helpers import H_ALICE, body, running
from .test_group_commit import committed, logged
from .test_journal import rec
from .test_writer_process import kill_service

pytestmark = pytest.mark.timeout(60)


def segments(path, where) -> list[str]:
    return [p.name for p in intake_log.segment_paths(intake_log.prefix(str(path), str(where)))]


def test_segments_append_rotate_and_replay_only_what_the_journal_lacks(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=None)
    j.insert(rec("r0", "completed"))  # committed already: replay leaves its row alone
    log = IntakeLog(intake_log.prefix(str(path), str(tmp_path)), segment_bytes=10_000)
    for i in range(3):
        log.append(row_values(rec(f"r{i}")))
    log.rotate()
    log.append(row_values(rec("r3", gpu_id="gpu-1")))
    with open(log.path, "ab") as f:  # a line a crash cut short: never acknowledged
        f.write(b'["r4", "u"')
    log.close()
    assert len(segments(path, tmp_path)) == 2
    assert intake_log.replay(j, str(tmp_path)) == 3
    assert committed(path) == {"r0": "completed", "r1": "queued", "r2": "queued", "r3": "queued"}
    assert j.get("r3").gpu_id == "gpu-1" and j.get("r1").body == rec("r1").body
    assert segments(path, tmp_path) == []
    assert intake_log.replay(j, str(tmp_path)) == 0  # nothing left
    j.close()


def test_a_replay_that_cannot_commit_keeps_the_segments(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=None)
    log = IntakeLog(intake_log.prefix(str(path), str(tmp_path)))
    log.append(row_values(rec("r1")))
    log.close()
    j._db.execute("PRAGMA query_only=ON")
    with pytest.raises(JournalError):
        intake_log.replay(j, str(tmp_path))
    j._db.execute("PRAGMA query_only=OFF")
    assert len(segments(path, tmp_path)) == 1  # for the next start
    assert intake_log.replay(j, str(tmp_path)) == 1
    j.close()


def ids_in(path) -> list[str]:
    return [values[0] for values in intake_log.read_segment(path)[0]]


def test_a_write_that_fails_is_an_error_and_the_next_line_starts_a_new_segment(tmp_path):
    log = IntakeLog(str(tmp_path / "j-intake"))
    log.append(row_values(rec("a")))
    first = log.path
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as on a full disk
    os.dup2(full, log._fd)
    os.close(full)
    with pytest.raises(JournalError):
        log.append(row_values(rec("b")))
    log.append(row_values(rec("c")))
    assert log.path != first
    assert ids_in(tmp_path / "j-intake-0") == ["a"]
    assert ids_in(tmp_path / "j-intake-1") == ["c"]
    log.remove_all()
    assert list(tmp_path.iterdir()) == []


def test_a_row_logged_with_other_columns_replays_by_name(tmp_path):
    """A row logged by a version with fewer (or other) columns: known columns by name,
    missing ones empty, unknown ones ignored."""
    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=None)
    row = dict(zip(COLUMNS, row_values(rec("old-version", gpu_id="gpu-3")), strict=True))
    del row["trace_id"]
    row["column_of_the_future"] = 1
    with open(intake_log.prefix(str(path)) + "-0", "wb") as f:
        f.write(json.dumps(row).encode() + b"\n")
    assert intake_log.replay(j) == 1
    back = j.get("old-version")
    assert back.gpu_id == "gpu-3" and back.trace_id is None and back.body == rec("x").body
    j.close()


def test_a_logged_row_whose_commit_fails_is_retried_and_new_requests_wait_meanwhile(tmp_path):
    """Another connection holds the write lock past SQLite's busy timeout (5 s): the
    acknowledged row's commit fails; it is staged again, its segment is kept, and new
    requests wait for their own commit (so a journal that cannot be written answers 503)
    until it commits; then the log is used again and a clean stop deletes it."""
    path = tmp_path / "j.sqlite3"

    async def scenario():
        j = Journal(path, checkpoint_interval_s=None)
        gc = GroupCommit(j, process=True, lazy_delay_s=0.01, intake_dir=str(tmp_path))
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        assert (await gc.insert(rec("r1"))) is None  # acknowledged: in the log
        deadline = time.monotonic() + 20
        while not gc._acks.retrying and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert gc._acks.retrying == {"r1"} and not gc.intake
        assert logged_here(path, tmp_path) == {"r1"}
        waiting = gc.insert(rec("r2"))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # it waits for its commit, behind the lock
        lock.execute("ROLLBACK")
        lock.close()
        assert (await asyncio.wait_for(waiting, 10)) is None
        while gc._acks.retrying and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        gc.flush()
        assert committed(path) == {"r1": "queued", "r2": "queued"}
        assert not gc._acks.retrying and gc.intake
        dup = gc.insert(rec("r1"))
        assert isinstance(dup.exception(), DuplicateRequest)
        gc.close()
        assert segments(path, tmp_path) == []
        j.close()

    asyncio.run(scenario())


def test_inserts_are_acknowledged_at_once_and_committed_later(tmp_path):
    path = tmp_path / "j.sqlite3"

    async def scenario():
        j = Journal(path, checkpoint_interval_s=None)
        j.insert(rec("old", "completed"))
        gc = GroupCommit(j, process=True, lazy_delay_s=30.0, intake_dir=str(tmp_path))
        assert gc.intake
        fut = gc.insert(rec("r1"))
        assert fut.done() and fut.result() is None  # durable: in the log
        assert logged_here(path, tmp_path) == {"r1"} and "r1" not in committed(path)
        dup = gc.insert(rec("r1"))  # in flight: not committed yet, still taken
        old = gc.insert(rec("old"))  # committed long ago, not in any memory but the journal
        for f in (dup, old):
            assert isinstance(f.exception(), DuplicateRequest)
        gc.flush()  # (a read would do the same)
        assert committed(path) == {"old": "completed", "r1": "queued"}
        gc.close()
        assert segments(path, tmp_path) == []  # a clean stop leaves no log
        j.close()

    asyncio.run(scenario())


def logged_here(path, where) -> set[str]:
    return intake_log.logged_ids(str(path), str(where))


def test_full_segments_are_deleted_once_their_rows_are_committed(tmp_path):
    path = tmp_path / "j.sqlite3"

    async def scenario():
        j = Journal(path, checkpoint_interval_s=None)
        gc = GroupCommit(
            j, process=True, lazy_delay_s=30.0, intake_dir=str(tmp_path), intake_segment_bytes=800
        )
        for i in range(12):  # a few hundred bytes each: a segment holds two or three
            assert (await gc.insert(rec(f"r{i}"))) is None
        assert len(segments(path, tmp_path)) > 1
        gc.flush()
        await asyncio.sleep(0)
        assert len(committed(path)) == 12
        assert len(segments(path, tmp_path)) == 1  # the one being written
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_acknowledged_requests_of_a_killed_service_are_replayed_at_its_next_start(tmp_path):
    """The service is SIGKILLed (its writer process dies with it) before any of its
    acknowledged rows reached SQLite: the next start copies them in from the log."""
    path = tmp_path / "j.sqlite3"
    script = (
        "import asyncio, sys\n"
        "from gpu_router.shim.store.group_commit import GroupCommit\n"
        "from gpu_router.shim.store.journal import Journal\n"
        "from tests.shim.store.test_journal import rec\n"
        "async def main():\n"
        "    j = Journal(sys.argv[1], checkpoint_interval_s=None)\n"
        "    gc = GroupCommit(j, process=True, lazy_delay_s=60.0, intake_dir=sys.argv[2])\n"
        "    for i in range(50):\n"
        "        await gc.insert(rec(f'r{i}'))\n"
        "    print(gc._proc.proc.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    root = str(Path(__file__).resolve().parents[3])
    service = subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        child = int(service.stdout.readline())  # 50 acknowledged
        assert committed(path) == {}
        kill_service(service, child, 10.0)
    finally:
        service.kill()
        service.wait()
        service.stdout.close()
    j = Journal(path, checkpoint_interval_s=None)
    gc = GroupCommit(j, process=True, intake_dir=str(tmp_path))
    assert committed(path) == {f"r{i}": "queued" for i in range(50)}
    gc.close()
    j.close()
    assert segments(path, tmp_path) == []


def test_a_log_that_cannot_be_written_refuses_with_503_and_nothing_runs(tmp_path):
    async def scenario():
        path = str(tmp_path / "j.sqlite3")
        async with running(path) as (c, app, fleet):
            svc = app.state.service
            assert svc.store.commits.intake
            ok = await c.post("/api/v1/route", json=body(request_id="ok"), headers=H_ALICE)
            assert ok.status_code == 200 and "ok/alice" in logged(path)
            full = os.open("/dev/full", os.O_WRONLY)
            log = svc.store.commits._acks.log
            os.dup2(full, log._fd)  # the log's disk is full
            os.close(full)
            log.rotate = lambda: log.path  # and stays full
            r = await c.post("/api/v1/route", json=body(request_id="j-1"), headers=H_ALICE)
            assert r.status_code == 503 and r.json()["data"]["status"] == "rejected"
            assert "j-1/alice" not in svc.requests.live and svc.router.state_of("j-1/alice") is None
            assert all(
                job.request_id != "j-1/alice"
                for g in fleet._gpus.values()
                for job in g.jobs.values()
            )

    asyncio.run(scenario())
