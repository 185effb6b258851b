"""The :class:`~.protocol.Store` on PostgreSQL (psycopg 3), for one or several routers
sharing a database.

Writes are staged on the event loop (``shim.store.batch``: the rows are built there, a
consistent snapshot of the records) and handed to the writer thread
(``shim.store.pg_writer``), which commits whatever has been handed over since its last
commit in one transaction: a new request at once (the next loop iteration, so that the
submissions of one iteration share a batch; ``commit_delay_ms`` later when set), state
changes at most ``lazy_commit_ms`` later or with the next new request, ``max_batch``
staged rows at once. A new request's future resolves once PostgreSQL has committed its
row (``synchronous_commit`` as the server has it: on by default, the commit's WAL
flushed), and fails at once while the database is unreachable (the submission answers
503 with Retry-After); state changes wait for the database to be back.

Reads and settings use a second connection, on the loop's thread (short queries; reads
first wait for the staged writes to be committed, so they see every write made so far,
and fail at once while the database is unreachable). The schema is created or migrated
when the store opens (``shim.store.pg_schema``).

A leader's store is fenced (:meth:`PostgresStore.fence_at`): every write then carries
the leader's lease epoch, and PostgreSQL refuses (writes nothing of) one whose epoch is
no longer the lease's, so a deposed leader that wakes up cannot write; the store then
refuses every later write (:class:`StoreFenced`) and tells ``on_fenced``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import psycopg

from gpu_router.shim.store import pg_schema
from gpu_router.shim.store.batch import Staging
from gpu_router.shim.store.pg_writer import PgWriter, connect
from gpu_router.shim.store.records import Done, JournalError, JournalRecord, StoreFenced
from gpu_router.shim.store.rows import record_from_row

READ_TIMEOUT_MS = 5000  # statement_timeout of the reading connection
SETTLE_TIMEOUT_S = 5.0  # how long a read or a flush waits for the writer at most


class PostgresStore:
    """A PostgreSQL database as the service's store (see :class:`~.protocol.Store`)."""

    def __init__(
        self,
        url: str,
        *,
        delay_s: float = 0.0,
        lazy_delay_s: float = 0.02,
        max_batch: int = 256,
        connect_timeout_s: float = 2.0,
        retry_s: float = 0.5,
    ) -> None:
        """Connect, migrate the schema, start the writer; raises :class:`JournalError`
        if the database cannot be reached or migrated."""
        self.url = url
        self.delay_s = delay_s
        self.lazy_delay_s = lazy_delay_s
        self.max_batch = max_batch
        self.connect_timeout_s = connect_timeout_s
        self.on_lost: Callable[[list[str]], None] | None = None
        self.epoch: int | None = None  # fenced at (fence_at)
        self._reader: psycopg.Connection[Any] | None = self._connect_reader()
        try:
            pg_schema.migrate(self._reader)
        except psycopg.Error as exc:
            self._reader.close()
            raise JournalError(f"PostgreSQL schema migration failed: {exc}") from exc
        except BaseException:
            self._reader.close()
            raise
        self._staging = Staging()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._due = float("inf")
        self._closed = False
        self.writer = PgWriter(
            url,
            self._settled,
            connect_timeout_s=connect_timeout_s,
            retry_s=retry_s,
            on_lost=self._lost,
        )

    def fence_at(
        self,
        epoch: int,
        on_fenced: Callable[[str], None] | None = None,
        holds: Callable[[], bool] | None = None,
    ) -> None:
        """From now on every write carries ``epoch`` (this router's lease epoch) and is
        refused by the database once another router holds a newer one; ``on_fenced`` is
        told (from the writer thread) the first time. ``holds`` is asked before every
        write: False (the lease term is over), and nothing more is written."""
        self.epoch = epoch
        self.writer.on_fenced = on_fenced
        self.writer.may_write = holds
        self.writer.epoch = epoch

    @classmethod
    def open(cls, jc: Any) -> PostgresStore:
        """The store a ``journal`` section names (``jc.path`` is the URL)."""
        return cls(
            jc.path,
            delay_s=jc.commit_delay_ms / 1000.0,
            lazy_delay_s=jc.lazy_commit_ms / 1000.0,
            max_batch=jc.max_batch,
        )

    def _lost(self, messages: list[str]) -> None:
        if self.on_lost is not None:
            self.on_lost(messages)

    # -- writes ---------------------------------------------------------------------------

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._closed:
            future.set_exception(JournalError("the store is closed"))
            return future
        self._loop = loop
        if self.writer.fenced is not None:
            future.set_exception(StoreFenced(f"PostgreSQL refused: {self.writer.fenced}"))
            return future
        if self.writer.down is not None:  # refused now, rather than after a hand-over
            future.set_exception(JournalError(f"PostgreSQL unreachable: {self.writer.down}"))
            return future
        self._staging.insert(record, _Resolve(future))
        self._hand_over_in(self.delay_s)
        return future

    def update(self, record: JournalRecord) -> None:
        if self._closed:
            return
        self._staging.update(record)
        self._hand_over_in(self.lazy_delay_s)

    def _hand_over_in(self, delay_s: float) -> None:
        if len(self._staging) >= self.max_batch:
            self._hand_over()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test, a shutdown): at once
            self._hand_over()
            return
        due = loop.time() + delay_s
        if self._handle is not None and self._due <= due:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._due = due
        self._handle = (
            loop.call_soon(self._hand_over)
            if delay_s <= 0
            else loop.call_later(delay_s, self._hand_over)
        )

    def _hand_over(self) -> int:
        """Hand what is staged to the writer; the number it is durable at."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = float("inf")
        if len(self._staging):
            return self.writer.hand(self._staging.take())
        return self.writer.handed

    def _settled(self, fates: list[tuple[Done, JournalError | None]]) -> None:
        """(writer thread) new rows' fates, told on the loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_tell, fates)

    def set_setting(self, key: str, value: Any) -> None:
        held = self.writer.may_write  # (the writer's: one place asks the lease)
        if self.writer.fenced is None and held is not None and not held():
            raise StoreFenced("this router's lease term is over")
        if self.writer.fenced is not None:
            raise StoreFenced(f"PostgreSQL refused: {self.writer.fenced}")
        fence, pre = ("", ()) if self.epoch is None else (pg_schema.FENCE, (self.epoch,))
        if value is None:
            using = " USING fence" if fence else ""
            self._execute(f"{fence} DELETE FROM settings{using} WHERE key = %s", (*pre, key))
        else:
            self._execute(
                f"{fence} INSERT INTO settings (key, value) SELECT %s, %s"
                + (" FROM fence" if fence else "")
                + " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (*pre, key, json.dumps(value)),
            )

    # -- reads (what is staged is committed first) ----------------------------------------

    def get(self, request_id: str) -> JournalRecord | None:
        rows = self._read(f"{pg_schema.SELECT} WHERE request_id = %s", (request_id,))
        return record_from_row(rows[0]) if rows else None

    def latest(self, client_request_id: str) -> JournalRecord | None:
        rows = self._read(pg_schema.LATEST, (client_request_id + "/", client_request_id + "0"))
        return record_from_row(rows[0]) if rows else None

    def unfinished(self) -> list[JournalRecord]:
        return [record_from_row(r) for r in self._read(pg_schema.UNFINISHED)]

    def since(self, wall_s: float) -> list[JournalRecord]:
        rows = self._read(f"{pg_schema.SELECT} WHERE submitted_at >= %s ORDER BY seq", (wall_s,))
        return [record_from_row(r) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._read("SELECT state, count(*) FROM requests GROUP BY 1")}

    def pending_callbacks(self) -> list[JournalRecord]:
        rows = self._read(f"{pg_schema.SELECT} WHERE callback_state = 'pending' ORDER BY seq")
        return [record_from_row(r) for r in rows]

    def settings(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._execute("SELECT key, value FROM settings")}

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self.flush()
        return self._execute(sql, params)

    def _connect_reader(self) -> psycopg.Connection[Any]:
        return connect(
            self.url,
            self.connect_timeout_s,
            autocommit=True,
            options=f"-c statement_timeout={READ_TIMEOUT_MS}",
        )

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on the reading connection; once more on a new connection when
        that one was lost (every statement here may run twice: reads, upserts)."""
        if self._closed:
            raise JournalError("the store is closed")
        for attempt in (1, 2):
            try:
                if self._reader is None or self._reader.closed:
                    self._reader = self._connect_reader()
                cur = self._reader.execute(sql, params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description is not None else []
            except psycopg.Error as exc:
                if pg_schema.fenced(exc):
                    raise StoreFenced(f"PostgreSQL refused the write: {exc}") from exc
                lost = self._reader is not None and self._reader.broken
                if lost:
                    self._reader.close()  # type: ignore[union-attr]
                if not lost or attempt == 2:
                    raise JournalError(f"PostgreSQL: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the writer -----------------------------------------------------------------------

    @property
    def writer_alive(self) -> bool:
        return self.writer.alive and not self._closed

    def flush(self) -> None:
        """Block until every write so far is committed; raises :class:`JournalError` at
        once while the database is unreachable (or after ``SETTLE_TIMEOUT_S``), and
        :class:`StoreFenced` once the database refused this store's epoch."""
        self.writer.wait(self._hand_over(), SETTLE_TIMEOUT_S)
        if self.writer.fenced is not None:
            raise StoreFenced(f"PostgreSQL refused: {self.writer.fenced}")

    def close(self) -> None:
        if self._closed:
            return
        self._hand_over()
        self._closed = True
        try:
            self.writer.close()
        finally:
            if self._reader is not None:
                self._reader.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._hand_over()
        await asyncio.to_thread(self.writer.close)
        self.close()


class _Resolve:
    """A new row's ``done``: its future's result (called on the loop)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def __call__(self, error: JournalError | None) -> None:
        if self.future.done():
            return
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)


def _tell(fates: list[tuple[Done, JournalError | None]]) -> None:
    for done, error in fates:
        done(error)
