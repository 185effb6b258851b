"""What every :class:`~gpu_router.shim.store.Store` must do, whatever keeps its rows.

Each test runs on every implementation (``STORES``: SQLite, in each of its ways of
committing, and PostgreSQL on a real server, ``conftest.pg_server``); a new implementation
adds its configurations there and passes the same tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gpu_router.shim.config import JournalSection
from gpu_router.shim.store import DuplicateRequest, JournalError, Store, open_store

from .test_journal import rec

pytestmark = pytest.mark.timeout(60)

#: name -> journal settings given the test's directory (None: kept nowhere)
STORES: dict[str, Callable[[Any], dict[str, Any] | None]] = {
    "sqlite-process-intake": lambda d: {"path": str(d / "j.sqlite3"), "intake_dir": str(d)},
    "sqlite-process-commit": lambda d: {"path": str(d / "j.sqlite3"), "intake_log": False},
    "sqlite-process-full": lambda d: {"path": str(d / "j.sqlite3"), "synchronous": "FULL"},
    "sqlite-loop": lambda d: {"path": str(d / "j.sqlite3"), "writer": "loop"},
    "sqlite-no-wal": lambda d: {"path": str(d / "j.sqlite3"), "wal": False},
    "sqlite-memory": lambda d: None,
    "postgres": lambda d: {"path": "postgres"},  # a new database of the session's server
}


@pytest.fixture(params=sorted(STORES))
def settings(request, tmp_path) -> JournalSection:
    made = STORES[request.param](tmp_path)
    if made is not None and made["path"] == "postgres":
        made = {"path": request.getfixturevalue("pg_server").create_database()}
    return JournalSection(**(made if made is not None else {"path": ":memory:"}))


def durable(settings: JournalSection) -> bool:
    return settings.path != ":memory:"


def test_an_implementation_of_the_protocol(settings):
    store = open_store(settings)
    try:
        assert isinstance(store, Store)
        assert isinstance(store.writer_alive, bool)
    finally:
        store.close()
    store.close()  # a second close does nothing


def test_inserted_updated_and_read_back(settings):
    async def scenario():
        store = open_store(settings)
        try:
            records = [rec(f"r{i}") for i in range(3)]
            await asyncio.gather(*(store.insert(r) for r in records))
            r = records[1]
            r.state, r.result, r.completion_time = "completed", {"y": [1, 2]}, 101.0
            store.update(r)  # nobody waits; a read sees it
            got = store.get("r1")
            assert got is not None and got is not r
            assert got.state == "completed" and got.result == {"y": [1, 2]} and got.terminal
            assert got.completion_time == 101.0 and got.body == r.body
            assert store.get("nope") is None
            assert [x.request_id for x in store.unfinished()] == ["r0", "r2"]
            assert store.count_by_state() == {"queued": 2, "completed": 1}
        finally:
            store.close()

    asyncio.run(scenario())


def test_a_taken_request_id_is_a_duplicate_and_leaves_the_row(settings):
    async def scenario():
        store = open_store(settings)
        try:
            await store.insert(rec("r0", "completed"))
            with pytest.raises(DuplicateRequest):
                await store.insert(rec("r0"))
            assert issubclass(DuplicateRequest, JournalError)
            await store.insert(rec("r1"))  # the store goes on
            assert store.get("r0").state == "completed"
            assert store.count_by_state() == {"completed": 1, "queued": 1}
        finally:
            store.close()

    asyncio.run(scenario())


def test_since_and_pending_callbacks_in_submission_order(settings):
    async def scenario():
        store = open_store(settings)
        try:
            for i, (at, state, cb) in enumerate(
                [
                    (50.0, "failed", "pending"),
                    (100.0, "queued", None),
                    (200.0, "completed", "pending"),
                    (300.0, "completed", "delivered"),
                ]
            ):
                r = rec(f"r{i}", state, callback_state=cb)
                r.submitted_at = at
                await store.insert(r)
            assert [r.request_id for r in store.since(100.0)] == ["r1", "r2", "r3"]
            assert list(store.since(1000.0)) == []
            assert [r.request_id for r in store.pending_callbacks()] == ["r0", "r2"]
        finally:
            store.close()

    asyncio.run(scenario())


def test_settings_persist_and_none_deletes(settings):
    store = open_store(settings)
    try:
        store.set_setting("maintenance", {"gpu-0": {"until": 1.5}})
        store.set_setting("quota:alice", 9)
        store.set_setting("quota:alice", 10)
        assert store.settings() == {"maintenance": {"gpu-0": {"until": 1.5}}, "quota:alice": 10}
        store.set_setting("maintenance", None)
        assert store.settings() == {"quota:alice": 10}
    finally:
        store.close()
    if durable(settings):
        again = open_store(settings)
        try:
            assert again.settings() == {"quota:alice": 10}
        finally:
            again.close()


def test_what_was_acknowledged_is_there_after_reopening(settings):
    if not durable(settings):
        pytest.skip("kept nowhere")

    async def write() -> None:
        store = open_store(settings)
        try:
            for i in range(20):
                await store.insert(rec(f"r{i}"))
            r = rec("r3", "completed")
            store.update(r)
        finally:
            await store.aclose()

    asyncio.run(write())
    store = open_store(settings)
    try:
        assert store.count_by_state() == {"queued": 19, "completed": 1}
        assert store.get("r3").state == "completed"
    finally:
        store.close()


def test_a_url_without_an_implementation_is_refused():
    with pytest.raises(JournalError, match="'mysql'"):
        open_store(JournalSection(path="mysql://db.example/router"))


def test_latest_is_the_last_submitted_of_one_client_id_across_users(settings):
    from gpu_router.shim.store import request_key

    async def scenario():
        store = open_store(settings)
        try:
            for n, (user, rid) in enumerate([("bob", "x"), ("alice", "x"), ("carol", "x0")]):
                r = rec(request_key(user, rid))
                r.user_id, r.submitted_at = user, 100.0 + n
                await store.insert(r)
            got = store.latest("x")
            assert got is not None and got.user_id == "alice" and got.client_request_id == "x"
            assert store.latest("x0").user_id == "carol"
            assert store.latest("y") is None
        finally:
            store.close()

    asyncio.run(scenario())
