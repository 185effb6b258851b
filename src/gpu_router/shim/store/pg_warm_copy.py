"""A standby's warm copy of the requests table: what it answers status and result reads
from while PostgreSQL cannot be reached.

How it keeps up: incremental polling by a monotonic column, not LISTEN/NOTIFY. Every
insert and update of a row takes the next value of the sequence ``requests_changed``
(schema version 4, ``shim.store.pg_schema``); a thread of its own reads, every
``poll_s``, the rows whose ``changed`` is above the highest it has (one indexed range
query, pages of ``PAGE`` rows). Why polling:

- it heals itself: after a lost connection or a PostgreSQL restart the next poll goes on
  from the last value held, so nothing is missed (a notification sent while a listener
  is disconnected is lost, and a listener needs such a catch-up query anyway);
- no payload limit (NOTIFY's 8,000 bytes; a result is bigger) and nothing added to the
  leader's commits (a NOTIFY takes a global lock at commit);
- its cost is one query per ``poll_s`` per standby, and its staleness is bounded by
  ``poll_s`` plus the query, which is what a read from a standby may be behind anyway.

Why ``changed`` grows in commit order: requests rows are written by the leader's one
writer connection only, one statement (its own transaction) at a time; a new leader's
lease taking waits for the old leader's write in flight (the fence's ``FOR SHARE``), and
the old leader's later writes are refused. So a poll never sees a value above one that
commits later. (Were there two writers, a row could commit below the cursor and be
missed until its next change.)

Memory is bounded: the ``max_rows`` rows changed last (the oldest go first). A read of a
row not held (never seen, or dropped) is not known: the caller answers 503, not 404,
while the store is unreachable. The copy says how far behind it may be: ``age_s``, the
seconds since the start of the last poll that succeeded (every commit made before then
is in the copy).

A leader that steps down (``shim.http.leadership``) seeds its new copy from its service's
records (:meth:`WarmCopy.seed`), as of the moment until which its memory held every
write the database may have: it answers reads at once, the store reachable or not, and
its first poll that succeeds replaces the seeded rows with the database's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import psycopg

from gpu_router.shim.store.pg_writer import connect
from gpu_router.shim.store.records import JournalError, JournalRecord, client_id
from gpu_router.shim.store.rows import COLUMNS, record_from_row

logger = logging.getLogger(__name__)

PAGE = 5000  # rows per poll query
_COLS = ", ".join(COLUMNS)
LOAD = f"SELECT changed, seq, {_COLS} FROM requests ORDER BY changed DESC LIMIT %s"
POLL = f"SELECT changed, seq, {_COLS} FROM requests WHERE changed > %s ORDER BY changed LIMIT %s"
_STATEMENT_TIMEOUT_MS = 5000


class WarmCopy:
    """The copy and its polling thread (``start``, ``close``); reads from any thread."""

    def __init__(
        self,
        url: str,
        *,
        poll_s: float = 0.2,
        max_rows: int = 100_000,
        connect_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self.poll_s = poll_s
        self.max_rows = max_rows
        self.connect_timeout_s = connect_timeout_s
        self._rows: OrderedDict[str, JournalRecord] = OrderedDict()  # by store key
        self._latest: dict[str, tuple[int, str]] = {}  # client id -> (seq, store key)
        self._lock = threading.Lock()
        self.cursor = 0  # the highest ``changed`` held
        self.loaded = False  # the first load is done
        self.seeded = False  # rows seeded (``seed``), replaced by the first load
        self.synced_at: float | None = None  # (monotonic s) start of the last good poll
        self.down: str | None = None  # why the last poll failed, if it did
        self.dropped = 0  # rows dropped for max_rows
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-warm-copy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop polling and free the copy."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        with self._lock:
            self._rows.clear()
            self._latest.clear()

    # -- reads ----------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Whether the copy was loaded once (it can answer reads)."""
        return (self.loaded or self.seeded) and not self._stop.is_set()

    def age_s(self) -> float | None:
        """How far behind the database the copy may be (s); None: never loaded."""
        at = self.synced_at
        return None if at is None else max(0.0, time.monotonic() - at)

    def get(self, key: str) -> JournalRecord | None:
        with self._lock:
            return self._rows.get(key)

    def latest(self, client_request_id: str) -> JournalRecord | None:
        with self._lock:
            held = self._latest.get(client_request_id)
            return None if held is None else self._rows.get(held[1])

    def __len__(self) -> int:
        return len(self._rows)

    def describe(self) -> dict[str, Any]:
        """What ``/health`` says of it."""
        age = self.age_s()
        return {
            "rows": len(self._rows),
            "age_s": None if age is None else round(age, 3),
            "store_reachable": self.down is None,
        }

    def seed(self, records: list[JournalRecord], synced_at: float) -> None:
        """(before ``start``) Hold ``records`` (a leader's own, in submission order) as
        the copy of the database at ``synced_at`` (monotonic s)."""
        with self._lock:
            for n, rec in enumerate(records[-self.max_rows :]):
                key = rec.request_id
                self._rows[key] = rec
                self._rows.move_to_end(key)
                self._latest[client_id(key)] = (n, key)
        self.synced_at = synced_at
        self.seeded = True

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._poll()
                except (psycopg.Error, JournalError) as exc:
                    if self.down is None:
                        logger.warning("warm copy: PostgreSQL unreachable: %s", exc)
                    self.down = str(exc).strip().splitlines()[0] if str(exc) else repr(exc)
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                else:
                    if self.down is not None:
                        logger.warning("warm copy: PostgreSQL reachable again")
                    self.down = None
                    self.synced_at = started
                self._stop.wait(max(0.0, self.poll_s - (time.monotonic() - started)))
        finally:
            if self._conn is not None:
                self._conn.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.url,
                self.connect_timeout_s,
                autocommit=True,
                options=f"-c statement_timeout={_STATEMENT_TIMEOUT_MS}",
            )
        return self._conn

    def _poll(self) -> None:
        conn = self._connection()
        if not self.loaded:
            rows = conn.execute(LOAD, (self.max_rows,)).fetchall()
            self._apply(list(reversed(rows)), replace=self.seeded)  # (the database's now)
            self.loaded = True
            return
        while not self._stop.is_set():
            rows = conn.execute(POLL, (self.cursor, PAGE)).fetchall()
            self._apply(rows)
            if len(rows) < PAGE:
                return

    def _apply(self, rows: list[tuple[Any, ...]], replace: bool = False) -> None:
        """Rows in ``changed`` order into the copy (instead of what it holds: ``replace``)."""
        with self._lock:
            if replace:
                self._rows.clear()
                self._latest.clear()
            for row in rows:
                changed, seq = int(row[0]), int(row[1])
                rec = record_from_row(row[2:])
                key = rec.request_id
                self._rows[key] = rec
                self._rows.move_to_end(key)
                cid = client_id(key)
                held = self._latest.get(cid)
                if held is None or held[0] <= seq:
                    self._latest[cid] = (seq, key)
                self.cursor = max(self.cursor, changed)
            while len(self._rows) > self.max_rows:
                old, rec = self._rows.popitem(last=False)
                cid = client_id(old)
                if self._latest.get(cid, (0, ""))[1] == old:
                    del self._latest[cid]
                self.dropped += 1
