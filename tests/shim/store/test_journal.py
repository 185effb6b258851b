"""Journal: WAL, commit-before-answer, read back after reopening."""

from __future__ import annotations

import sqlite3

import pytest

from gpu_router.shim.store.journal import Journal, JournalError, JournalRecord


def rec(rid="r1", state="queued", **kw):
    return JournalRecord(
        request_id=rid,
        user_id="u",
        model_id="m",
        priority=3,
        body={"user_id": "u", "payload": {"x": [1, 2]}},
        body_hash="h",
        answer={"status": "queued"},
        state=state,
        submitted_at=100.0,
        **kw,
    )


def test_wal_and_round_trip(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    j.insert(rec())
    j.update("r1", state="completed", result={"y": 1.5}, completion_time=101.0)
    j.close()
    j2 = Journal(path)
    got = j2.get("r1")
    assert got is not None and got.state == "completed" and got.result == {"y": 1.5}
    assert got.body["payload"] == {"x": [1, 2]} and got.terminal
    assert j2.get("nope") is None
    j2.close()


def test_committed_before_return_visible_to_another_connection(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.insert(rec())
    other = sqlite3.connect(path)
    assert other.execute("SELECT state FROM requests").fetchall() == [("queued",)]
    other.close()
    j.close()


def test_unfinished_in_order_and_callbacks(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    for i, st in enumerate(["queued", "completed", "processing", "failed", "cancelled"]):
        j.insert(rec(f"r{i}", st, callback_state="pending" if st == "failed" else None))
    assert [r.request_id for r in j.unfinished()] == ["r0", "r2"]
    assert [r.request_id for r in j.pending_callbacks()] == ["r3"]
    assert j.count_by_state()["queued"] == 1
    assert [r.request_id for r in j.since(50.0)] == [f"r{i}" for i in range(5)]
    assert list(j.since(200.0)) == []
    j.close()


def test_duplicate_insert_and_bad_update(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    j.insert(rec())
    with pytest.raises(JournalError):
        j.insert(rec())
    with pytest.raises(KeyError):
        j.update("r1", colour="red")
    j.close()


def test_memory_journal():
    j = Journal(":memory:")
    j.insert(rec())
    assert j.get("r1").state == "queued"
    j.close()


def test_checkpoints_run_off_the_writer(tmp_path):
    import shutil
    import time

    path = tmp_path / "j.sqlite3"
    j = Journal(path, checkpoint_interval_s=0.05)
    assert j._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # never inline
    for i in range(50):
        j.insert(rec(f"r{i}"))
    deadline = time.monotonic() + 5
    rows = 0
    while time.monotonic() < deadline and rows < 50:
        time.sleep(0.1)
        copy = tmp_path / f"copy-{time.monotonic_ns()}.sqlite3"
        shutil.copyfile(path, copy)  # the database file alone, without its WAL
        other = sqlite3.connect(copy)
        rows = other.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        other.close()
    assert rows == 50  # the background thread copied the WAL into the database file
    j.close()
    assert not j._checkpointer.is_alive()


def test_latest_finds_the_last_submitted_key_of_a_bare_request_id(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    for key in ("r1/u", "r10/u", "r1/v", "r1.x/u", "r2/u"):
        j.insert(rec(key))
    got = j.latest("r1")  # the keys <id>/<user> of "r1" only: not r10, not r1.x
    assert got is not None and got.request_id == "r1/v"
    assert j.latest("r3") is None
    j.close()


def test_a_journal_from_before_per_user_ids_is_migrated_once(tmp_path):
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.insert(rec("old"))
    j.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 0")  # as a journal made before per-user ids
    db.commit()
    db.close()
    j = Journal(path)
    assert j.migrated and j.get("old/u") is not None and j.get("old") is None
    j.insert(rec("bare"))  # keys are opaque to the journal once migrated
    j.close()
    j = Journal(path)
    assert not j.migrated and j.get("bare") is not None
    j.close()
