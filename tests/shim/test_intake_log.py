"""The intake log: new requests made durable by one append and acknowledged at once,
committed to SQLite by the writer process later, and replayed after a crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from gpu_router.shim import intake_log
from gpu_router.shim.group_commit import GroupCommit
from gpu_router.shim.intake_log import IntakeLog
from gpu_router.shim.journal import DuplicateRequest, Journal, JournalError
from gpu_router.shim.journal_rows import row_values

from .app_helpers import H_ALICE, body, running
from .test_group_commit import committed, logged
from .test_journal import rec

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


def test_a_write_that_fails_is_an_error_and_the_next_line_starts_a_new_segment(tmp_path):
    log = IntakeLog(str(tmp_path / "j-intake"))
    log.append(["a"])
    first = log.path
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as on a full disk
    os.dup2(full, log._fd)
    os.close(full)
    with pytest.raises(JournalError, match="No space"):
        log.append(["b"])
    log.append(["c"])
    assert log.path != first
    assert (tmp_path / "j-intake-0").read_bytes() == b'["a"]\n'
    assert (tmp_path / "j-intake-1").read_bytes() == b'["c"]\n'
    log.remove_all()
    assert list(tmp_path.iterdir()) == []


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
    ids = set()
    for seg in intake_log.segment_paths(intake_log.prefix(str(path), str(where))):
        ids |= {intake_log._row(line)[0] for line in seg.read_bytes().splitlines(True)}
    return ids


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
        "from gpu_router.shim.group_commit import GroupCommit\n"
        "from gpu_router.shim.journal import Journal\n"
        "from tests.shim.test_journal import rec\n"
        "async def main():\n"
        "    j = Journal(sys.argv[1], checkpoint_interval_s=None)\n"
        "    gc = GroupCommit(j, process=True, lazy_delay_s=60.0, intake_dir=sys.argv[2])\n"
        "    for i in range(50):\n"
        "        await gc.insert(rec(f'r{i}'))\n"
        "    print(gc._proc.proc.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    service = subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        child = int(service.stdout.readline())  # 50 acknowledged
        assert committed(path) == {}
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
            time.sleep(0.02)
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
            assert svc.writer.intake
            ok = await c.post("/api/v1/route", json=body(request_id="ok"), headers=H_ALICE)
            assert ok.status_code == 200 and "ok" in logged(path)
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, svc.writer._intake._fd)  # the log's disk is full
            os.close(full)
            svc.writer._intake.rotate = lambda: svc.writer._intake.path  # and stays full
            r = await c.post("/api/v1/route", json=body(request_id="j-1"), headers=H_ALICE)
            assert r.status_code == 503 and r.json()["data"]["status"] == "rejected"
            assert "j-1" not in svc.live and "j-1" not in svc.r.records
            assert all(
                job.request_id != "j-1" for g in fleet._gpus.values() for job in g.jobs.values()
            )

    asyncio.run(scenario())
