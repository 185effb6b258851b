"""The journal's multi-row statements: a batch's new rows and updates in a handful of
SQLite calls, not one per row.

The rows of a batch go in chunks whose sizes are powers of two up to ``CHUNK``, so a
dozen statement texts (built once, then cached by sqlite3) cover every batch size.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from gpu_router.shim.store.records import Done, DuplicateRequest, JournalError
from gpu_router.shim.store.rows import COLUMNS, MUTABLE

CHUNK = 256  # rows per multi-row statement at most

INSERT_ONE = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def chunks(n: int) -> list[int]:
    """``n`` as a sum of powers of two, none above ``CHUNK`` (largest first)."""
    rest = n % CHUNK
    bits = [1 << b for b in range(rest.bit_length() - 1, -1, -1) if rest >> b & 1]
    return [CHUNK] * (n // CHUNK) + bits


class BatchStatements:
    """Writes a batch's rows on a connection, inside the caller's transaction."""

    def __init__(self) -> None:
        self._insert_many: dict[int, str] = {}
        self._update_many: dict[int, str] = {}

    def insert_rows(
        self, db: sqlite3.Connection, rows: list[tuple[str, list[Any], Done | None]]
    ) -> dict[int, JournalError]:
        """Insert in multi-row statements; a chunk with a taken id is retried row by row
        (a failed statement undoes only itself). Returns the failed rows by position."""
        failed: dict[int, JournalError] = {}
        at = 0
        for size in chunks(len(rows)):
            chunk = rows[at : at + size]
            sql = self._insert_many.get(size)
            if sql is None:
                one = f"({', '.join('?' for _ in COLUMNS)})"
                sql = self._insert_many[size] = (
                    f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES " + ", ".join([one] * size)
                )
            try:
                db.execute(sql, [v for _rid, values, _done in chunk for v in values])
            except sqlite3.IntegrityError:
                if not db.in_transaction:  # pragma: no cover - SQLite rolled back all
                    raise
                for n, (rid, values, _done) in enumerate(chunk, at):
                    try:
                        db.execute(INSERT_ONE, values)
                    except sqlite3.IntegrityError as exc:
                        failed[n] = DuplicateRequest(f"request_id {rid!r} is taken: {exc}")
            at += size
        return failed

    def update_rows(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Rewrite the changing columns of many rows (``rows.mutable_row`` tuples), a
        multi-row UPDATE ... FROM VALUES per chunk."""
        at = 0
        for size in chunks(len(rows)):
            sql = self._update_many.get(size)
            if sql is None:
                one = f"({', '.join('?' for _ in range(len(MUTABLE) + 1))})"
                sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(MUTABLE, 1))
                sql = self._update_many[size] = (
                    f"UPDATE requests SET {sets} FROM (VALUES {', '.join([one] * size)}) AS v "
                    f"WHERE requests.request_id = v.column{len(MUTABLE) + 1}"
                )
            db.execute(sql, [v for row in rows[at : at + size] for v in row])
            at += size
