"""The PostgreSQL store's schema, its migrations, and its batch statements.

The service creates and migrates the schema itself when it opens the store
(:func:`migrate`): ``gpu_router_schema`` holds the version the database is at, and the
migrations after it run in one transaction under an advisory lock, so that several
routers starting at once migrate it once. A database at a newer version than this code
knows is refused.

Rows are the SQLite journal's (``shim.store.rows``: the same columns, JSON as compact
text) plus ``seq``, the submission order. A batch is two statements whatever its size:
one ``INSERT ... SELECT FROM unnest(arrays)`` for the new rows (``ON CONFLICT DO NOTHING
RETURNING``: the ids it did not return are duplicates) and one ``UPDATE ... FROM
unnest(arrays)`` for the changed ones, together in one statement (``WITH ins AS (INSERT
...), upd AS (UPDATE ...)``): one round trip per batch, committed by itself (the writer's
connection is in autocommit mode).
"""

from __future__ import annotations

from typing import Any

import psycopg

from gpu_router.shim.store.records import TERMINAL, JournalError
from gpu_router.shim.store.rows import COLUMNS, MUTABLE

#: the PostgreSQL type of every column of a request row
TYPES = {
    "request_id": 'text COLLATE "C"',  # bytewise: the keys of one id are a range
    "user_id": "text",
    "model_id": "text",
    "priority": "integer",
    "body": "text",
    "body_hash": "text",
    "answer": "text",
    "state": "text",
    "gpu_id": "text",
    "job_id": "text",
    "attempts": "integer",
    "submitted_at": "double precision",
    "start_time": "double precision",
    "completion_time": "double precision",
    "result": "text",
    "error": "text",
    "callback_url": "text",
    "callback_state": "text",
    "trace_id": "text",
}
if set(TYPES) != set(COLUMNS):  # pragma: no cover - a column added to one side only
    raise RuntimeError(f"pg_schema.TYPES does not match the columns {COLUMNS}")

_NOT_NULL = {
    "user_id",
    "model_id",
    "priority",
    "body",
    "body_hash",
    "answer",
    "state",
    "attempts",
    "submitted_at",
}
_TERMINAL = ", ".join(f"'{s}'" for s in TERMINAL)
#: the SQLSTATE ``gpu_router_fence`` raises (a write of an older epoch, refused)
FENCED_SQLSTATE = "GRF01"

#: (version, statements): each runs once, in order, on a database below its version
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE requests (\n    "
            + ",\n    ".join(
                f"{c} {TYPES[c]}"
                + (" PRIMARY KEY" if c == "request_id" else "")
                + (" NOT NULL" if c in _NOT_NULL else "")
                for c in COLUMNS
            )
            + ",\n    seq bigint GENERATED ALWAYS AS IDENTITY\n)",
            "CREATE INDEX requests_submitted ON requests (submitted_at)",
            # what a restart or a takeover loads: small, whatever the table's size
            f"CREATE INDEX requests_unfinished ON requests (seq) WHERE state NOT IN ({_TERMINAL})",
            "CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL)",
        ],
    ),
    (
        2,
        [
            # the leader lease of several routers (``shim.store.pg_lease``): one row
            (
                "CREATE TABLE leader_lease (id integer PRIMARY KEY CHECK (id = 1), "
                "holder text, address text, epoch bigint NOT NULL, expires_at timestamptz)"
            ),
            "INSERT INTO leader_lease (id, epoch) VALUES (1, 0)",
        ],
    ),
    (
        3,
        [
            # epoch fencing of a leader's writes: raises unless ``e`` is the lease's
            # epoch, and holds the lease row (FOR SHARE) until the writing transaction
            # ends, so that a new leader's taking (an UPDATE of that row) waits for it
            (
                "CREATE FUNCTION gpu_router_fence(e bigint) RETURNS bigint LANGUAGE plpgsql "
                "AS $$ DECLARE cur bigint; BEGIN "
                "SELECT epoch INTO cur FROM leader_lease WHERE id = 1 FOR SHARE; "
                "IF cur IS DISTINCT FROM e THEN RAISE EXCEPTION "
                "'fenced: epoch % is not the lease''s epoch %', e, cur "
                f"USING ERRCODE = '{FENCED_SQLSTATE}'; END IF; RETURN cur; END $$"
            ),
        ],
    ),
    (
        4,
        [
            # every insert and update of a row takes the next ``changed`` (the only
            # writer of requests is the leader's one writer connection, one statement at a
            # time, so ``changed`` grows in commit order): a standby's warm copy reads
            # what changed after the last value it has (``shim.store.pg_warm_copy``)
            "CREATE SEQUENCE requests_changed",
            (
                "ALTER TABLE requests ADD COLUMN changed bigint NOT NULL "
                "DEFAULT nextval('requests_changed')"
            ),
            "CREATE INDEX requests_by_change ON requests (changed)",
        ],
    ),
]
VERSION = MIGRATIONS[-1][0]
_LOCK = 0x6770755F726F7574  # pg_advisory_xact_lock key of the migrations ("gpu_rout")


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the database to :data:`VERSION` (one transaction); returns the version it
    was at. Raises :class:`JournalError` for a newer database."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS gpu_router_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM gpu_router_schema").fetchone()
        was = int(row[0]) if row is not None and row[0] is not None else 0
        if was > VERSION:
            raise JournalError(
                f"the database's schema is at version {was}; this gpu-router knows up to "
                f"{VERSION}: upgrade gpu-router"
            )
        for version, statements in MIGRATIONS:
            if version > was:
                for sql in statements:
                    conn.execute(sql)  # type: ignore[arg-type]
        if was < VERSION:
            conn.execute("DELETE FROM gpu_router_schema")
            conn.execute("INSERT INTO gpu_router_schema (version) VALUES (%s)", (VERSION,))
    return was


def _array(column: str) -> str:
    return f"%s::{TYPES[column].split(' COLLATE')[0]}[]"


_ARRAYS = ", ".join(_array(c) for c in COLUMNS)
#: every column of new rows, as one array per column (``COLUMNS`` order); returns the ids
#: inserted (a taken one is not)
INSERT_ROWS = (
    f"INSERT INTO requests ({', '.join(COLUMNS)}) "
    f"SELECT {', '.join(COLUMNS)} FROM unnest({_ARRAYS}) WITH ORDINALITY "
    f"AS u({', '.join(COLUMNS)}, ord) ORDER BY ord "
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)
_UPDATED = [*MUTABLE, "request_id"]  # rows.mutable_row's order
#: the changing columns of rows, one array per column (``rows.mutable_row`` order)
UPDATE_ROWS = (
    "UPDATE requests AS r SET "
    + ", ".join(f"{c} = u.{c}" for c in MUTABLE)
    + ", changed = nextval('requests_changed')"
    + f" FROM unnest({', '.join(_array(c) for c in _UPDATED)}) "
    + f"AS u({', '.join(_UPDATED)}) WHERE r.request_id = u.request_id"
)
#: both in one statement (one round trip, one transaction in autocommit); the update's
#: rows must not be among the new ones (its snapshot does not see them: ``batch_statement``)
INSERT_AND_UPDATE = (
    f"WITH ins AS ({INSERT_ROWS}), upd AS ({UPDATE_ROWS}) SELECT request_id FROM ins"
)
_MUTABLE_AT = [COLUMNS.index(c) for c in MUTABLE]

#: the first CTE of a fenced write (its one parameter: the writer's epoch); every
#: statement joins it, so the whole statement fails when the epoch is not the lease's
FENCE = "WITH fence AS MATERIALIZED (SELECT gpu_router_fence(%s::bigint) AS fence_epoch)"
_INS_FROM = " ORDER BY ord ON CONFLICT"
FENCED_INSERT = f"{FENCE} " + INSERT_ROWS.replace(_INS_FROM, f" CROSS JOIN fence{_INS_FROM}")
_UPD_WHERE = " WHERE r.request_id = u.request_id"
FENCED_UPDATE = f"{FENCE} " + UPDATE_ROWS.replace(_UPD_WHERE, f" CROSS JOIN fence{_UPD_WHERE}")
FENCED_INSERT_AND_UPDATE = (
    f"{FENCE}, ins AS ({FENCED_INSERT.removeprefix(FENCE + ' ')}), "
    f"upd AS ({FENCED_UPDATE.removeprefix(FENCE + ' ')}) SELECT request_id FROM ins"
)
if not all("CROSS JOIN fence" in q for q in (FENCED_INSERT, FENCED_UPDATE)):  # pragma: no cover
    raise RuntimeError("pg_schema: the fenced statements lost their join")


def fenced(exc: BaseException) -> bool:
    """Whether a psycopg error is ``gpu_router_fence``'s refusal."""
    return getattr(exc, "sqlstate", None) == FENCED_SQLSTATE


def batch_statement(
    inserts: list[list[Any]], updates: dict[str, tuple[Any, ...]], epoch: int | None = None
) -> tuple[str, list[Any]]:
    """One statement that writes a batch, and its parameters (one array per column).
    An update of a row inserted in the same batch is folded into the new row's values
    (``inserts`` and ``updates`` are changed). With ``epoch`` (a leader's), the
    statement is fenced: it writes nothing and fails (:func:`fenced`) unless ``epoch``
    is the lease's epoch."""
    for values in inserts:
        row = updates.pop(values[0], None)  # (request_id is the first column)
        if row is not None:
            for at, value in zip(_MUTABLE_AT, row, strict=False):
                values[at] = value
    params: list[Any] = [] if epoch is None else [epoch]
    if inserts:
        params += columns(inserts, len(COLUMNS))
    if updates:
        params += columns(list(updates.values()), len(_UPDATED))
    if epoch is not None:
        if inserts and updates:
            return FENCED_INSERT_AND_UPDATE, params
        return (FENCED_INSERT if inserts else FENCED_UPDATE), params
    if inserts and updates:
        return INSERT_AND_UPDATE, params
    return (INSERT_ROWS if inserts else UPDATE_ROWS), params


SELECT = f"SELECT {', '.join(COLUMNS)} FROM requests"
UNFINISHED = f"{SELECT} WHERE state NOT IN ({_TERMINAL}) ORDER BY seq"
#: the last submitted of the keys ``<id>/<user>`` of one id (``records.request_key``)
LATEST = f"{SELECT} WHERE request_id >= %s AND request_id < %s ORDER BY seq DESC LIMIT 1"


def columns(rows: list[Any], width: int) -> list[list[Any]]:
    """Rows (sequences of ``width`` values) as one list per column."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]
