"""The service's durable state: :class:`~.protocol.Store`, and :func:`open_store`, which
builds one from ``config.journal``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gpu_router.shim.store.protocol import Store
from gpu_router.shim.store.records import (
    TERMINAL,
    DuplicateRequest,
    JournalError,
    JournalRecord,
    StoredRequest,
    StoreFenced,
    client_id,
    request_key,
)

__all__ = [
    "TERMINAL",
    "DuplicateRequest",
    "JournalError",
    "JournalRecord",
    "RecordReader",
    "Store",
    "StoreFenced",
    "StoredRequest",
    "client_id",
    "open_reader",
    "open_store",
    "request_key",
]

if TYPE_CHECKING:  # (the writer process imports this package: no pydantic there)
    from collections.abc import Iterable

    from gpu_router.shim.config import JournalSection


class RecordReader(Protocol):
    """The reads an offline tool (``gpu-router report``) makes of a store."""

    def since(self, wall_s: float) -> Iterable[JournalRecord]: ...

    def close(self) -> None: ...


#: URL schemes of PostgreSQL (``shim.store.postgres_store``)
POSTGRES_SCHEMES = ("postgresql", "postgres")


def open_store(jc: JournalSection) -> Store:
    """The store ``jc.path`` names: a SQLite file path or ``:memory:``, or a PostgreSQL
    URL (``postgresql://user@host:port/dbname``, libpq's form)."""
    if "://" in jc.path:
        scheme = jc.path.split("://", 1)[0]
        if scheme not in POSTGRES_SCHEMES:
            raise JournalError(
                f"journal.path {jc.path!r}: no store for {scheme!r} URLs "
                f"(a file path, or a {POSTGRES_SCHEMES[0]}:// URL)"
            )
        from gpu_router.shim.store.postgres_store import PostgresStore

        return PostgresStore.open(jc)
    from gpu_router.shim.store.sqlite_store import SqliteStore

    return SqliteStore.open(jc)


def open_reader(path: str) -> RecordReader:
    """The store at ``path`` (an existing SQLite file), read beside a running service: its
    rows as committed, without a writer (rows of the last ``journal.lazy_commit_ms`` may
    not be there yet). A URL names another implementation; none is built in yet."""
    if "://" in path:
        scheme = path.split("://", 1)[0]
        raise JournalError(f"store {path!r}: no store for {scheme!r} URLs yet")
    if not Path(path).is_file():
        raise JournalError(f"store {path!r}: no such file")
    from gpu_router.shim.store.journal import Journal

    return Journal(path, checkpoint_interval_s=None)
