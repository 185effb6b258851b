"""What only the PostgreSQL store does: its schema and migrations, group commit through
its writer thread, and the database going away and coming back (a real server each time:
``conftest.pg_server``, or one of the test's own where it is stopped)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import psycopg
import pytest

from gpu_router.shim.config import JournalSection
from gpu_router.shim.store import DuplicateRequest, JournalError, open_store, pg_schema
from gpu_router.shim.store.postgres_store import PostgresStore
from gpu_router.shim.store.rows import mutable_row, row_values

from .pg_server import PgServer, running_server
from .test_journal import rec

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of the test's own (it is stopped and started)."""
    yield from running_server()


def test_the_schema_is_created_at_its_version_once_and_a_newer_one_is_refused(pg_server):
    url = pg_server.create_database()
    for _ in range(2):  # the second open finds it at its version and changes nothing
        open_store(JournalSection(path=url)).close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM gpu_router_schema").fetchall() == [
            (pg_schema.VERSION,)
        ]
        conn.execute("UPDATE gpu_router_schema SET version = version + 1")
    with pytest.raises(JournalError, match="upgrade gpu-router"):
        open_store(JournalSection(path=url))


def test_an_unreachable_database_refuses_to_open(pg_server):
    url = pg_server.url("no_such_database")
    with pytest.raises(JournalError, match="unreachable"):
        open_store(JournalSection(path=url))


def test_submissions_of_one_loop_iteration_share_a_transaction(pg_server):
    url = pg_server.create_database()

    async def scenario() -> tuple[int, dict[str, int]]:
        store = open_store(JournalSection(path=url))
        assert isinstance(store, PostgresStore)
        try:
            futures = [store.insert(rec(f"r{i}")) for i in range(300)]
            await asyncio.gather(*futures)
            return store.writer.commits, store.count_by_state()
        finally:
            await store.aclose()

    commits, counts = asyncio.run(scenario())
    assert counts == {"queued": 300}
    assert 1 <= commits <= 2  # max_batch 256: one hand-over at 256, one with the rest


def test_two_submissions_of_one_id_in_one_batch_the_first_wins(pg_server):
    url = pg_server.create_database()

    async def scenario() -> None:
        store = open_store(JournalSection(path=url))
        try:
            first, second = store.insert(rec("same", "queued")), store.insert(rec("same", "failed"))
            await first
            with pytest.raises(DuplicateRequest):
                await second
            assert store.get("same").state == "queued"
        finally:
            store.close()

    asyncio.run(scenario())


def wait_for(condition, timeout_s: float = 10.0) -> float:
    """Seconds until ``condition()`` held."""
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout_s, "not within the timeout"
        time.sleep(0.05)
    return time.monotonic() - t0


def test_the_database_down_refuses_new_rows_at_once_keeps_changes_and_recovers(own_server):
    url = own_server.create_database()

    async def scenario() -> None:
        store = open_store(JournalSection(path=url))
        assert isinstance(store, PostgresStore)
        try:
            r0 = rec("r0")
            await store.insert(r0)
            own_server.stop()
            t0 = time.monotonic()
            with pytest.raises(JournalError):
                await store.insert(rec("r1"))  # the first commit finds the server gone
            with pytest.raises(JournalError, match="unreachable"):
                await store.insert(rec("r2"))  # then refused without a round trip
            assert time.monotonic() - t0 < 2.0
            assert not store.writer_alive
            r0.state, r0.result = "completed", {"y": 1}
            store.update(r0)  # kept until the database is back
            await asyncio.sleep(0.1)
            with pytest.raises(JournalError):
                store.flush()
            with pytest.raises(JournalError):
                store.get("r0")
            own_server.start()
            took = await asyncio.to_thread(wait_for, lambda: store.writer_alive)
            assert took < 3.0  # a reconnection is tried every 0.5 s
            store.flush()
            assert store.get("r0").state == "completed"
            assert store.get("r0").result == {"y": 1}
            assert store.get("r1") is None and store.get("r2") is None
            await store.insert(rec("r3"))
            assert store.count_by_state() == {"completed": 1, "queued": 1}
        finally:
            await store.aclose()

    asyncio.run(scenario())


def test_changes_that_cannot_be_written_at_close_are_told_lost(own_server):
    url = own_server.create_database()

    async def scenario() -> list[str]:
        lost: list[str] = []
        store = open_store(JournalSection(path=url))
        store.on_lost = lost.extend
        r0 = rec("r0")
        await store.insert(r0)
        own_server.stop()
        r0.state = "completed"
        store.update(r0)
        await store.aclose()
        return lost

    lost = asyncio.run(scenario())
    assert len(lost) == 1 and "'r0'" in lost[0]


def test_a_batch_is_one_statement_and_a_change_of_a_new_row_is_folded_into_it(pg_server):
    url = pg_server.create_database()
    open_store(JournalSection(path=url)).close()  # the schema
    old, prev, new = rec("old"), rec("prev"), rec("new")
    with psycopg.connect(url, autocommit=True) as conn:
        sql, params = pg_schema.batch_statement([row_values(old), row_values(prev)], {})
        assert conn.execute(sql, params).fetchall() == [("old",), ("prev",)]
        again = rec("old", "failed")  # its id is taken: it and its change are dropped
        for r in (prev, new, again):
            r.state, r.result = "completed", {"y": r.request_id}
        inserts = [row_values(new), row_values(again)]
        updates = {rid: mutable_row(r) for rid, r in (("prev", prev), ("new", new), ("old", again))}
        sql, params = pg_schema.batch_statement(inserts, updates)
        assert sql == pg_schema.INSERT_AND_UPDATE and list(updates) == ["prev"]
        assert conn.execute(sql, params).fetchall() == [("new",)]
        rows = conn.execute("SELECT request_id, state, result FROM requests ORDER BY seq")
        assert rows.fetchall() == [
            ("old", "queued", None),
            ("prev", "completed", '{"y":"prev"}'),
            ("new", "completed", '{"y":"new"}'),
        ]
