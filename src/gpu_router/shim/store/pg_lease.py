"""The leader lease of several routers sharing one PostgreSQL database.

One row (``leader_lease``, schema version 2) says who leads: its holder (a random id per
process), the address other replicas send clients to, an epoch, and when the lease
expires. A router takes the lease only once it has expired (or was never held), and each
taking raises the epoch by one; the leader renews it every third of its TTL. Every time
is the database's (``now()``), so the routers' clocks do not matter.

The epoch fences a deposed leader: it goes with every job the leader starts on a worker,
and a worker refuses an epoch older than the newest it has seen. A leader that cannot
renew for two thirds of the TTL (on its own monotonic clock, so before any other router
can take the lease) must stop at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from gpu_router.shim.store.pg_writer import connect
from gpu_router.shim.store.records import JournalError


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """Who holds (or last held) the lease: address, epoch, seconds until it expires
    (negative: expired; None: never held)."""

    holder: str | None
    address: str | None
    epoch: int
    expires_in_s: float | None


class LeaderLease:
    """This process's side of the lease: ``acquire``, ``renew``, ``current``. Each call
    is one short statement on a connection of its own (blocking: run it off the loop)."""

    def __init__(self, url: str, address: str, ttl_s: float) -> None:
        self.url = url
        self.address = address
        self.ttl_s = ttl_s
        self.holder = uuid.uuid4().hex
        self.epoch: int | None = None  # held, at this epoch
        self._conn: psycopg.Connection[Any] | None = None

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        try:
            if self._conn is None or self._conn.closed:
                timeout_ms = max(100, round(self.ttl_s * 1000 / 3))  # a renewal's bound
                self._conn = connect(
                    self.url, 1.0, autocommit=True, options=f"-c statement_timeout={timeout_ms}"
                )
            return self._conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        except psycopg.Error as exc:
            if self._conn is not None:
                self._conn.close()
            raise JournalError(f"PostgreSQL lease: {exc}") from exc

    def acquire(self) -> int | None:
        """Take the lease if it is free or expired; the new epoch, or None."""
        row = self._one(
            "UPDATE leader_lease SET holder = %s, address = %s, epoch = epoch + 1, "
            "expires_at = now() + make_interval(secs => %s) "
            "WHERE id = 1 AND (expires_at IS NULL OR expires_at < now()) RETURNING epoch",
            (self.holder, self.address, self.ttl_s),
        )
        self.epoch = int(row[0]) if row is not None else None
        return self.epoch

    def renew(self) -> bool:
        """Extend the lease held; False if another router holds it now."""
        if self.epoch is None:
            return False
        row = self._one(
            "UPDATE leader_lease SET expires_at = now() + make_interval(secs => %s) "
            "WHERE id = 1 AND holder = %s AND epoch = %s RETURNING epoch",
            (self.ttl_s, self.holder, self.epoch),
        )
        if row is None:
            self.epoch = None
        return row is not None

    def current(self) -> LeaseHolder:
        row = self._one(
            "SELECT holder, address, epoch, extract(epoch FROM expires_at - now()) "
            "FROM leader_lease WHERE id = 1",
            (),
        )
        if row is None:  # pragma: no cover - the migration inserts the row
            return LeaseHolder(None, None, 0, None)
        left = None if row[3] is None else float(row[3])
        return LeaseHolder(row[0], row[1], int(row[2]), left)

    def release(self) -> None:
        """Give the lease up (a clean stop): another router may take it at once."""
        if self.epoch is None:
            return
        self._one(
            "UPDATE leader_lease SET expires_at = NULL WHERE id = 1 AND holder = %s "
            "AND epoch = %s RETURNING epoch",
            (self.holder, self.epoch),
        )
        self.epoch = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
