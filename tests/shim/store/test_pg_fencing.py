"""Epoch fencing of a leader's writes in the database (``pg_schema.FENCE``): two stores
on one real PostgreSQL server, fenced at epoch 1 and then 2; once the lease is at 2, the
epoch-1 store's writes are refused by the database (nothing of them is written) and
raise :class:`StoreFenced`, while the epoch-2 store writes as usual."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from gpu_router.shim.store import StoreFenced
from gpu_router.shim.store.pg_lease import LeaderLease
from gpu_router.shim.store.postgres_store import PostgresStore

from .test_journal import rec

pytestmark = pytest.mark.timeout(60)


def test_a_write_of_an_older_epoch_is_refused_and_writes_nothing(pg_server):
    url = pg_server.create_database()
    old, new = PostgresStore(url), PostgresStore(url)
    a, b = LeaderLease(url, "http://a", 0.3), LeaderLease(url, "http://b", 0.3)
    told: list[str] = []
    try:
        assert a.acquire() == 1
        old.fence_at(1, told.append)

        async def first() -> None:
            await old.insert(rec("r1"))
            old.set_setting("maintenance", ["g0"])

        asyncio.run(first())
        assert new.get("r1").state == "queued"
        assert new.settings() == {"maintenance": ["g0"]}

        time.sleep(0.4)  # a's lease expired (a paused leader)
        assert b.acquire() == 2
        new.fence_at(2)

        async def deposed() -> None:
            with pytest.raises(StoreFenced):
                await old.insert(rec("r2"))
            # its state change is refused as well, and every later write at once
            old.update(dataclasses.replace(rec("r1"), state="running", gpu_id="g0"))
            with pytest.raises(StoreFenced):
                old.flush()
            with pytest.raises(StoreFenced):
                await old.insert(rec("r3"))
            with pytest.raises(StoreFenced):
                old.set_setting("maintenance", None)

        asyncio.run(deposed())
        assert told and "epoch 1" in told[0]
        assert new.get("r2") is None and new.get("r3") is None
        assert new.get("r1").state == "queued" and new.get("r1").gpu_id is None
        assert new.settings() == {"maintenance": ["g0"]}

        async def current() -> None:  # the epoch-2 store writes as usual
            await new.insert(rec("r4"))
            new.update(dataclasses.replace(rec("r1"), state="running", gpu_id="g1"))
            new.set_setting("maintenance", None)

        asyncio.run(current())
        assert new.get("r4").state == "queued"
        assert new.get("r1").gpu_id == "g1"
        assert new.settings() == {}
    finally:
        a.close()
        b.close()
        old.close()
        new.close()


def test_a_fenced_setting_write_of_an_older_epoch_is_refused(pg_server):
    """The settings' statement is fenced on its own (not through the writer)."""
    url = pg_server.create_database()
    store = PostgresStore(url)
    lease = LeaderLease(url, "http://a", 5.0)
    try:
        assert lease.acquire() == 1
        store.fence_at(0)  # an epoch older than the lease's
        with pytest.raises(StoreFenced):
            store.set_setting("quota", {"u": 1})
        assert store.settings() == {}
    finally:
        lease.close()
        store.close()


def test_a_store_whose_lease_term_is_over_writes_nothing_before_any_refusal(pg_server):
    """``holds`` (``Leadership.holds``) asked before every batch and setting: once it is
    False the store writes nothing more, though the database would still take its
    epoch (a leader whose lease was not renewed in time, before anyone took it)."""
    url = pg_server.create_database()
    store, reader = PostgresStore(url), PostgresStore(url)
    lease = LeaderLease(url, "http://a", 30.0)
    held = [True]
    told: list[str] = []
    try:
        assert lease.acquire() == 1
        store.fence_at(1, told.append, lambda: held[0])

        async def leading() -> None:
            await store.insert(rec("r1"))
            store.set_setting("maintenance", ["g0"])

        asyncio.run(leading())
        assert reader.get("r1").state == "queued"
        held[0] = False  # the term is over (the lease still at epoch 1 in the database)

        async def over() -> None:
            store.update(dataclasses.replace(rec("r1"), state="running", gpu_id="g0"))
            with pytest.raises(StoreFenced):
                await store.insert(rec("r2"))
            with pytest.raises(StoreFenced):
                store.flush()
            with pytest.raises(StoreFenced):
                store.set_setting("maintenance", None)

        asyncio.run(over())
        assert told == ["this router's lease term is over"]
        assert reader.get("r2") is None
        assert reader.get("r1").state == "queued" and reader.get("r1").gpu_id is None
        assert reader.settings() == {"maintenance": ["g0"]}
        assert lease.current().epoch == 1  # nobody else took it: the refusal was ours
    finally:
        lease.close()
        store.close()
        reader.close()
