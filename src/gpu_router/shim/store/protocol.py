"""The store: what the service keeps durable, behind one object.

:class:`Store` is all that ``shim.core`` asks of durable state: new requests (their 200
waits for :meth:`Store.insert`), their later changes, the reads of restart recovery and
the status API, and the admin settings. ``open_store`` (``shim.store``) builds one from
``config.journal``; :class:`~.sqlite_store.SqliteStore` is the first implementation.
Records are :class:`~.records.JournalRecord`; errors :class:`~.records.JournalError`
and its :class:`~.records.DuplicateRequest`. Every method is called on the event loop's
thread; reads block it (they are short: one query).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from gpu_router.shim.store.records import JournalRecord


@runtime_checkable
class Store(Protocol):
    #: told the messages of state changes (``update``) that could not be made durable;
    #: set by the service (None: nobody is told)
    on_lost: Callable[[list[str]], None] | None

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        """Write a new request. The future resolves once its row is durable (a 200 may
        then go out), or raises :class:`~.records.DuplicateRequest` (the request_id has a
        row) or :class:`~.records.JournalError` (it could not be written: answer 503).
        Call with a running event loop."""
        ...

    def update(self, record: JournalRecord) -> None:
        """Write the record's changing columns (state, gpu_id, job_id, attempts, times,
        result, error, callback_state) soon, from the record as it is then; nobody waits.
        A failure goes to ``on_lost``."""
        ...

    def get(self, request_id: str) -> JournalRecord | None:
        """The request's row as last written (insert and updates so far), or None.
        ``request_id`` is the store key, ``records.request_key(user_id, request_id)``:
        request ids are unique per user."""
        ...

    def latest(self, client_request_id: str) -> JournalRecord | None:
        """The last submitted request of any user whose own request_id is
        ``client_request_id`` (for callers that act for every user: admins, services)."""
        ...

    def unfinished(self) -> list[JournalRecord]:
        """Requests not in a terminal state, in submission order."""
        ...

    def since(self, wall_s: float) -> list[JournalRecord]:
        """Requests submitted at or after ``wall_s`` (epoch seconds), in submission order."""
        ...

    def count_by_state(self) -> dict[str, int]:
        """How many requests are in each state (states without any are left out)."""
        ...

    def pending_callbacks(self) -> list[JournalRecord]:
        """Terminal requests whose callback is still ``pending``, in submission order."""
        ...

    def settings(self) -> dict[str, Any]:
        """Every admin setting (JSON values), by key."""
        ...

    def set_setting(self, key: str, value: Any) -> None:
        """Persist an admin setting before returning (None deletes it); raises
        :class:`~.records.JournalError` if it could not be written."""
        ...

    @property
    def writer_alive(self) -> bool:
        """Whether writes go through the store's separate writer (a process, for SQLite)
        and it is alive: the ``gpu_router_journal_writer_process_up`` gauge."""
        ...

    def flush(self) -> None:
        """Block until every write so far is durable (shutdown, tests)."""
        ...

    def close(self) -> None:
        """Write what is left and release everything; later calls do nothing."""
        ...

    async def aclose(self) -> None:
        """:meth:`close`, from a coroutine."""
        ...
