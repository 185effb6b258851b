"""The journal writer process: commits in a child process, answers in order, hands its
batches back when it dies, exits with the service; and the WAL stays bounded under
steady writes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_router.shim.store.batch import StagedBatch
from gpu_router.shim.store.group_commit import GroupCommit
from gpu_router.shim.store.journal import Journal
from gpu_router.shim.store.records import DuplicateRequest, JournalError
from gpu_router.shim.store.rows import mutable_row, row_values
from gpu_router.shim.store.sqlite_store import SqliteStore

from .test_group_commit import committed
from .test_journal import rec

pytestmark = pytest.mark.timeout(60)


def padded(rid: str, size: int) -> object:
    r = rec(rid)
    r.body = {"pad": "x" * size}
    return r


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: nobody may have reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def commit_now(j: Journal, r) -> None:
    """Commit one new row as a batch of its own."""
    j.commit_batch(StagedBatch([(r.request_id, row_values(r), None)], {}))


def kill_service(service: subprocess.Popen, child: int, timeout_s: float) -> bool:
    """SIGKILL the service and wait up to ``timeout_s`` for its writer child to be gone;
    whether it is."""
    service.send_signal(signal.SIGKILL)
    service.wait(10)
    deadline = time.monotonic() + timeout_s
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    return gone(child)


def test_the_writer_process_commits_answers_and_reports_duplicates(tmp_path):
    path = tmp_path / "j.sqlite3"

    async def scenario():
        j = Journal(path, checkpoint_interval_s=None)
        gc = GroupCommit(j, process=True, intake=False)  # acknowledged by the commit
        store = SqliteStore(j, gc)
        child = gc._proc.proc
        assert child.pid != os.getpid() and store.writer_alive
        await asyncio.wait_for(asyncio.gather(*(gc.insert(rec(f"r{i}")) for i in range(5))), 10)
        assert committed(path) == {f"r{i}": "queued" for i in range(5)}
        gc.update(rec("r0", "completed"))  # staged only: a read waits for its commit
        assert store.get("r0").state == "completed"
        with pytest.raises(DuplicateRequest):
            await asyncio.wait_for(gc.insert(rec("r1", "processing")), 10)
        await asyncio.wait_for(gc.insert(rec("r5")), 10)  # the writer goes on after it
        assert committed(path)["r1"] == "queued" and committed(path)["r5"] == "queued"
        store.close()
        assert child.poll() == 0 and not store.writer_alive

    asyncio.run(scenario())


def test_a_flush_without_an_event_loop_waits_for_the_child(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=None)
    gc = GroupCommit(j, process=True)
    for i in range(300):  # more than one pipe's worth of bytes
        gc._staging.insert(padded(f"r{i}", 400))
    gc.flush()
    assert len(committed(path)) == 300
    gc.close()
    j.close()


def test_when_the_writer_process_dies_its_batches_are_committed_here(tmp_path):
    path = tmp_path / "j.sqlite3"

    async def scenario():
        j = Journal(path, checkpoint_interval_s=None)
        gc = GroupCommit(j, process=True, intake=False)  # acknowledged by the commit
        await asyncio.wait_for(gc.insert(rec("r0")), 10)
        child = gc._proc.proc
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # handed to a dead child (or found dead first): committed on the event loop
        await asyncio.wait_for(gc.insert(rec("r1")), 10)
        await asyncio.wait_for(gc.insert(rec("r2")), 10)
        assert not gc._proc.alive
        assert committed(path) == {"r0": "queued", "r1": "queued", "r2": "queued"}
        assert j._checkpointer is not None and j._checkpointer.is_alive()  # taken over here
        # a batch the child committed but never answered: its waiters hear "committed"
        # (it is found by its rows' own submitted_at), not "duplicate", which the service
        # would answer as a re-submission and then drop the request it had admitted
        r2 = rec("r2")
        fates = []
        gc._sent[99] = StagedBatch([("r2", row_values(r2), fates.append)], {})
        # ... and one whose new row was never written: an older request holds the id
        older = rec("r1")
        older.submitted_at = 42.0
        gc._sent[100] = StagedBatch([("r1", row_values(older), fates.append)], {})
        gc._child_died()
        assert fates[0] is None
        assert isinstance(fates[1], DuplicateRequest) and not gc._sent
        # two batches it committed, unanswered: one of updates only, then one with a new
        # row and a newer update of the same request; neither is written again (the first
        # would put the older state back)
        r3 = rec("r3")
        older_update = StagedBatch([], {"r0": mutable_row(rec("r0", "processing"))})
        newer = StagedBatch([("r3", row_values(r3), fates.append)], {})
        newer.updates["r0"] = mutable_row(rec("r0", "completed"))
        j.commit_batch(StagedBatch([], dict(older_update.updates)))
        j.commit_batch(StagedBatch([("r3", row_values(r3), None)], dict(newer.updates)))
        gc._sent[101], gc._sent[102] = older_update, newer
        gc._child_died()
        assert committed(path)["r0"] == "completed" and fates[2] is None and not gc._sent
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_without_wal_there_is_no_writer_process(tmp_path):
    async def scenario():
        j = Journal(tmp_path / "j.sqlite3", wal=False, checkpoint_interval_s=None)
        gc = GroupCommit(j, process=True)
        assert gc._proc is None and not gc.writer_process_alive and not gc.intake
        fut = gc.insert(rec("r0"))
        assert fut.done() and fut.result() is None  # committed on the loop, at once
        assert committed(tmp_path / "j.sqlite3") == {"r0": "queued"}
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_the_writer_process_dies_with_the_service_even_while_it_commits(tmp_path):
    """Killed with the service while a commit waits for a lock (SQLite would wait 5 s):
    it does not finish that commit after the service is gone."""
    path = tmp_path / "j.sqlite3"
    script = (
        "import sys\n"
        "from gpu_router.shim.store.group_commit import GroupCommit\n"
        "from gpu_router.shim.store.journal import Journal, JournalRecord\n"
        "j = Journal(sys.argv[1], checkpoint_interval_s=None)\n"
        "gc = GroupCommit(j, process=True, intake=False)\n"
        "gc.flush()\n"
        "print(gc._proc.proc.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "gc._staging.insert(JournalRecord('late', 'u', 'm', 3, {}, 'h', {}, 'queued', 1.0))\n"
        "gc._hand_over()\n"
        "print('sent', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        child = int(service.stdout.readline())
        lock.execute("BEGIN IMMEDIATE")  # the writer's next commit waits for this
        service.stdin.write("go\n")
        service.stdin.flush()
        assert service.stdout.readline().strip() == "sent"
        time.sleep(0.3)  # the child is inside its commit now, waiting for the lock
        assert kill_service(service, child, 2.0)
        lock.execute("ROLLBACK")
        assert "late" not in committed(path)
    finally:
        lock.close()
        service.kill()
        service.wait()
        service.stdin.close()
        service.stdout.close()


def test_the_writer_process_exits_when_the_service_is_killed(tmp_path):
    script = (
        "import sys, time\n"
        "from gpu_router.shim.store.group_commit import GroupCommit\n"
        "from gpu_router.shim.store.journal import Journal\n"
        "j = Journal(sys.argv[1], checkpoint_interval_s=None)\n"
        "gc = GroupCommit(j, process=True, intake=False)\n"
        "gc.flush()\n"
        "print(gc._proc.proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "j.sqlite3")], stdout=subprocess.PIPE
    )
    try:
        child = int(service.stdout.readline())
        assert not gone(child)
        assert kill_service(service, child, 10.0)
    finally:
        service.kill()
        service.wait()
        service.stdout.close()


def test_the_wal_is_started_over_under_steady_writes(tmp_path, monkeypatch):
    """A passive checkpoint alone never catches up with a writer that never stops, and
    SQLite starts a WAL over only after one has: the file would grow with every commit."""
    limit = 256 << 10
    monkeypatch.setattr(Journal, "WAL_RESTART_BYTES", limit)
    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=0.02)
    wal = Path(str(path) + "-wal")
    largest = 0
    for n in range(8000):  # each commit appends 3 pages or more: 96 MB of WAL in all
        commit_now(j, padded(f"r{n}", 2000))
        largest = max(largest, wal.stat().st_size)
    j.close()
    assert largest < 24 << 20


def test_a_wal_restart_does_not_wait_for_a_reader(tmp_path):
    """A RESTART checkpoint cannot finish while another connection reads an older
    snapshot; the writer gives up on it at once instead of holding commits for the
    busy timeout (5 s)."""
    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=None)
    commit_now(j, rec("r0"))
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM requests").fetchone() == (1,)
    commit_now(j, rec("r1"))
    j._restart_due = True
    started = time.monotonic()
    commit_now(j, rec("r2"))
    assert time.monotonic() - started < 1.0
    reader.rollback()
    reader.close()
    j.close()
    assert committed(path) == {"r0": "queued", "r1": "queued", "r2": "queued"}


def test_a_batch_the_writer_cannot_commit_fails_its_waiters_and_reports_lost_updates(tmp_path):
    """Another connection holds the write lock past SQLite's busy timeout (5 s): the
    batch fails in the child, its new request hears JournalError, its update is reported
    lost in this process, and the writer goes on with the next batch."""
    path = tmp_path / "j.sqlite3"

    async def scenario():
        j = Journal(path, checkpoint_interval_s=None)
        lost: list[str] = []
        j.on_lost = lost.extend
        gc = GroupCommit(j, process=True, intake=False)  # acknowledged by the commit
        await asyncio.wait_for(gc.insert(rec("r0")), 10)
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        gc.update(rec("r0", "completed"))
        with pytest.raises(JournalError) as info:
            await asyncio.wait_for(gc.insert(rec("r1")), 30)
        assert not isinstance(info.value, DuplicateRequest)
        lock.execute("ROLLBACK")
        lock.close()
        assert len(lost) == 1 and "r0" in lost[0]
        await asyncio.wait_for(gc.insert(rec("r2")), 10)
        assert committed(path) == {"r0": "queued", "r2": "queued"}
        gc.close()
        j.close()

    asyncio.run(scenario())


def test_metrics_say_whether_the_writer_process_is_up(tmp_path):
    """``gpu_router_journal_writer_process_up`` is 1 while the router commits through its
    writer process and 0 once that died (the router then commits on its event loop and
    still answers)."""
    from ..app_helpers import H_ALICE, body, running

    def gauge(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("gpu_router_journal_writer"))
        return float(line.split()[-1])

    async def scenario() -> None:
        async with running(str(tmp_path / "j.sqlite3")) as (client, app, _fleet):
            assert gauge((await client.get("/metrics")).text) == 1.0
            child = app.state.service.store.commits._proc.proc
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            r = await client.post("/api/v1/route", json=body(request_id="after"), headers=H_ALICE)
            assert r.status_code == 200  # (durable in the intake log)
            for _ in range(200):  # the death is seen at the next hand-over to the writer
                if gauge((await client.get("/metrics")).text) == 0.0:
                    break
                await asyncio.sleep(0.01)
            assert gauge((await client.get("/metrics")).text) == 0.0
            assert app.state.service.store.get("after/alice") is not None

    asyncio.run(scenario())
