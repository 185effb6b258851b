"""The request journal: SQLite (WAL mode by default), the service's only durable state.

A request is written here, and the write committed, before the client hears 200; every
later change of state is written as it happens. After a crash the service reads back the
requests that are not terminal and resumes them; terminal ones are never run again, and
their results stay readable behind ``result_url``.

``synchronous=NORMAL`` in WAL mode survives the death of the process (SIGKILL) without an
fsync per commit; ``FULL`` survives power loss too at the cost of one fsync per commit.

Wall-clock times (epoch seconds) are stored; they are what the API reports.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id      TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    body            TEXT NOT NULL,
    body_hash       TEXT NOT NULL,
    answer          TEXT NOT NULL,
    state           TEXT NOT NULL,
    gpu_id          TEXT,
    job_id          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    submitted_at    REAL NOT NULL,
    start_time      REAL,
    completion_time REAL,
    result          TEXT,
    error           TEXT,
    callback_url    TEXT,
    callback_state  TEXT,
    trace_id        TEXT
);
CREATE INDEX IF NOT EXISTS requests_state ON requests(state);
CREATE INDEX IF NOT EXISTS requests_user ON requests(user_id, submitted_at);
CREATE INDEX IF NOT EXISTS requests_submitted ON requests(submitted_at);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(slots=True)
class JournalRecord:
    """One row. ``body`` is the validated submission (a JSON object), ``answer`` the data
    of the first 200 answer (replayed to an identical re-submission)."""

    request_id: str
    user_id: str
    model_id: str
    priority: int
    body: dict[str, Any]
    body_hash: str
    answer: dict[str, Any]
    state: str
    submitted_at: float
    gpu_id: str | None = None
    job_id: str | None = None
    attempts: int = 0
    start_time: float | None = None
    completion_time: float | None = None
    result: Any = None
    error: str | None = None
    callback_url: str | None = None
    callback_state: str | None = None  # None, "pending", "delivered", "failed"
    trace_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


_JSON_COLUMNS = ("body", "answer", "result")
_COLUMNS = [f.name for f in fields(JournalRecord)]


class JournalError(Exception):
    """The journal could not be written: the request must not be acknowledged."""


class Journal:
    def __init__(self, path: str | Path, *, wal: bool = True, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if wal and self.path != ":memory:":
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: could not switch to WAL mode (got {mode})")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._insert_sql = (
            f"INSERT INTO requests ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def _row(record: JournalRecord) -> list[Any]:
        out = []
        for col in _COLUMNS:  # getattr, not asdict: asdict deep-copies the payload
            value = getattr(record, col)
            if col in _JSON_COLUMNS and value is not None:
                value = json.dumps(value)
            out.append(value)
        return out

    @staticmethod
    def _record(row: tuple[Any, ...]) -> JournalRecord:
        values = dict(zip(_COLUMNS, row, strict=True))
        for col in _JSON_COLUMNS:
            if values[col] is not None:
                values[col] = json.loads(values[col])
        return JournalRecord(**values)

    def insert(self, record: JournalRecord) -> None:
        """Commit a new request; raises :class:`JournalError` (id taken, disk full, ...)."""
        try:
            self._db.execute(self._insert_sql, self._row(record))
        except sqlite3.Error as exc:
            raise JournalError(f"journal insert of {record.request_id!r} failed: {exc}") from exc

    def update(self, request_id: str, **changes: Any) -> None:
        """Commit changed columns of one request."""
        if not changes:
            return
        bad = set(changes) - set(_COLUMNS)
        if bad:
            raise KeyError(f"unknown journal columns {sorted(bad)}")
        cols = ", ".join(f"{c} = ?" for c in changes)
        vals = [
            json.dumps(v) if c in _JSON_COLUMNS and v is not None else v for c, v in changes.items()
        ]
        try:
            self._db.execute(
                f"UPDATE requests SET {cols} WHERE request_id = ?", (*vals, request_id)
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal update of {request_id!r} failed: {exc}") from exc

    def get(self, request_id: str) -> JournalRecord | None:
        row = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        return None if row is None else self._record(row)

    def unfinished(self) -> list[JournalRecord]:
        """Requests not yet terminal, in submission order."""
        marks = ", ".join("?" for _ in TERMINAL)
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM requests "
            f"WHERE state NOT IN ({marks}) ORDER BY rowid",
            TERMINAL,
        ).fetchall()
        return [self._record(r) for r in rows]

    def pending_callbacks(self) -> list[JournalRecord]:
        """Terminal requests whose callback has not been delivered or given up on."""
        rows = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE callback_state = 'pending' "
            "ORDER BY rowid"
        ).fetchall()
        return [self._record(r) for r in rows]

    def since(self, wall_ts: float) -> Iterator[JournalRecord]:
        """Requests submitted at or after ``wall_ts`` (to rebuild quota usage on restart)."""
        cur = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE submitted_at >= ? ORDER BY rowid",
            (wall_ts,),
        )
        for row in cur:
            yield self._record(row)

    def count_by_state(self) -> dict[str, int]:
        return dict(
            self._db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall()
        )

    def set_setting(self, key: str, value: Any) -> None:
        """Persist an admin setting (None deletes it)."""
        try:
            if value is None:
                self._db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )
        except sqlite3.Error as exc:
            raise JournalError(f"journal setting {key!r} failed: {exc}") from exc

    def settings(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM settings")}
