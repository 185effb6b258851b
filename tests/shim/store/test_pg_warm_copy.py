"""A standby's warm copy (``shim.store.pg_warm_copy``) on a real PostgreSQL server: it
follows the leader store's inserts and updates (schema v4's ``changed``), keeps the
``max_rows`` changed last, answers ``latest`` by client id, and keeps answering while
the server is stopped; once it is started again on the same data directory, the copy
goes on from where it was and misses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator

import pytest

from gpu_router.shim.store import request_key
from gpu_router.shim.store.pg_warm_copy import WarmCopy
from gpu_router.shim.store.postgres_store import PostgresStore

from .pg_server import PgServer, running_server
from .test_journal import rec

pytestmark = pytest.mark.timeout(90)


def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def insert_all(store: PostgresStore, *records) -> None:
    async def go() -> None:
        for r in records:
            await store.insert(r)

    asyncio.run(go())


def test_the_copy_follows_inserts_and_updates_and_keeps_the_rows_changed_last(pg_server):
    url = pg_server.create_database()
    store = PostgresStore(url)
    insert_all(store, rec(request_key("u", "old")), rec(request_key("u", "a")))
    copy = WarmCopy(url, poll_s=0.02, max_rows=3)
    try:
        copy.start()
        until(lambda: copy.loaded)
        assert copy.get("a/u").state == "queued" and copy.down is None
        assert copy.age_s() is not None and copy.age_s() < 5.0
        insert_all(store, rec(request_key("v", "a")), rec(request_key("u", "b")))
        until(lambda: copy.get("b/u") is not None)
        # four rows, three kept: the one changed first went
        assert len(copy) == 3 and copy.get("old/u") is None and copy.dropped == 1
        assert copy.latest("a").request_id == "a/v"  # the last submitted of id "a"
        done = dataclasses.replace(rec("a/u"), state="completed", result={"y": 1})
        store.update(done)
        store.flush()
        until(lambda: copy.get("a/u").state == "completed")
        assert copy.get("a/u").result == {"y": 1}
        # a/u changed last now: the next new row drops a/v (changed before it), not a/u
        insert_all(store, rec(request_key("u", "c")))
        until(lambda: copy.get("c/u") is not None)
        assert copy.get("a/v") is None and copy.get("a/u") is not None
        assert copy.latest("a") is None  # its latest key went
        assert copy.describe()["rows"] == 3 and copy.describe()["store_reachable"] is True
    finally:
        copy.close()
        store.close()
    assert len(copy) == 0  # closed: freed


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    yield from running_server()


def test_the_copy_answers_while_the_server_is_stopped_and_catches_up_after(own_pg):
    url = own_pg.create_database()
    store = PostgresStore(url)
    insert_all(store, *(rec(request_key("u", f"r{i}")) for i in range(5)))
    copy = WarmCopy(url, poll_s=0.05)
    try:
        copy.start()
        until(lambda: copy.loaded and len(copy) == 5)
        store.close()
        own_pg.stop("fast")
        until(lambda: copy.down is not None)
        time.sleep(0.5)
        assert copy.usable and copy.get("r3/u").state == "queued"
        assert copy.age_s() >= 0.5  # it says how far behind it may be
        assert copy.describe()["store_reachable"] is False
        own_pg.start()
        store = PostgresStore(url)
        insert_all(store, rec(request_key("u", "after")))
        store.update(dataclasses.replace(rec("r0/u"), state="completed"))
        store.flush()
        until(lambda: copy.get("after/u") is not None and copy.get("r0/u").state == "completed")
        assert copy.down is None and copy.age_s() < 5.0 and len(copy) == 6
    finally:
        copy.close()
        store.close()


def test_a_seeded_copy_answers_at_once_unreachable_and_the_first_load_replaces_it(own_pg):
    """A leader that stepped down seeds its copy with its own records: usable before any
    poll and while the server is stopped (as old as the seed's moment says), replaced by
    the database's rows once a poll succeeds."""
    url = own_pg.create_database()
    store = PostgresStore(url)
    insert_all(store, rec(request_key("u", "a")), rec(request_key("u", "b")))
    store.close()
    own_pg.stop("fast")
    seeded_at = time.monotonic() - 2.0
    mine = [
        dataclasses.replace(rec(request_key("u", "a")), state="completed", result={"y": 1}),
        dataclasses.replace(rec(request_key("u", "gone")), submitted_at=2.0),
        dataclasses.replace(rec(request_key("v", "gone")), submitted_at=3.0),
    ]
    copy = WarmCopy(url, poll_s=0.05)
    try:
        copy.seed(mine, seeded_at)
        assert copy.usable and not copy.loaded and len(copy) == 3
        assert copy.get("a/u").state == "completed"
        assert copy.latest("gone").request_id == "gone/v"  # the last submitted
        copy.start()
        until(lambda: copy.down is not None)
        assert copy.usable and copy.get("a/u").result == {"y": 1}
        assert copy.age_s() >= 2.0  # from the seed's moment, not from now
        own_pg.start()
        until(lambda: copy.loaded)
        # the database's rows now: its own a/u (queued), b/u; nothing of the seed's
        assert copy.down is None and len(copy) == 2
        assert copy.get("a/u").state == "queued" and copy.get("b/u") is not None
        assert copy.get("gone/u") is None and copy.latest("gone") is None
        assert copy.age_s() < 5.0
    finally:
        copy.close()
