"""The leader lease on a real PostgreSQL server: one holder at a time, a new epoch for
each taking, renewal only by the holder, expiry and release."""

from __future__ import annotations

import time

from gpu_router.shim.config import JournalSection
from gpu_router.shim.store import open_store
from gpu_router.shim.store.pg_lease import LeaderLease


def test_one_holder_at_a_time_and_each_taking_raises_the_epoch(pg_server):
    url = pg_server.create_database()
    open_store(JournalSection(path=url)).close()  # the schema
    a, b = LeaderLease(url, "http://a", 0.5), LeaderLease(url, "http://b", 0.5)
    try:
        assert b.current().expires_in_s is None  # never held
        assert a.acquire() == 1
        assert b.acquire() is None
        held = b.current()
        assert (held.holder, held.address, held.epoch) == (a.holder, "http://a", 1)
        assert 0 < held.expires_in_s <= 0.5
        assert a.renew() and not b.renew()
        time.sleep(0.6)  # expired: a did not renew
        assert b.acquire() == 2
        assert not a.renew() and a.epoch is None  # deposed
        assert b.renew()
        b.release()
        assert a.acquire() == 3  # at once after a release
    finally:
        a.close()
        b.close()
