"""The SQLite journal's rows: the schema, and the conversions between records
(:class:`~.records.JournalRecord`) and row values (JSON columns as compact text)."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from gpu_router.shim import fastjson
from gpu_router.shim.store.records import JournalRecord

SCHEMA = """
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
-- no index on state or user: no hot query uses one, and every write would maintain it
-- (state changes two or three times per request); journals made before drop them
DROP INDEX IF EXISTS requests_state;
DROP INDEX IF EXISTS requests_user;
CREATE INDEX IF NOT EXISTS requests_submitted ON requests(submitted_at);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


JSON_COLUMNS = ("body", "answer", "result")
#: record fields that are not columns (memory only)
NOT_STORED = frozenset({"body_json", "rerouted_from"})
COLUMNS = [f.name for f in fields(JournalRecord) if f.name not in NOT_STORED]
COLUMN_SET = frozenset(COLUMNS)
#: what changes after the insert (rewritten from the record by a staged update)
MUTABLE = (
    "state",
    "gpu_id",
    "job_id",
    "attempts",
    "start_time",
    "completion_time",
    "result",
    "error",
    "callback_state",
)


def mutable_row(record: JournalRecord) -> tuple[Any, ...]:
    """The changing columns of a row (``MUTABLE``), then its request_id."""
    result = record.result
    return (
        record.state,
        record.gpu_id,
        record.job_id,
        record.attempts,
        record.start_time,
        record.completion_time,
        None if result is None else fastjson.dumps(result),
        record.error,
        record.callback_state,
        record.request_id,
    )


def row_values(record: JournalRecord) -> list[Any]:
    """Every column of a new row (``COLUMNS`` order); JSON columns encoded."""
    out = []
    for col in COLUMNS:  # getattr, not asdict: asdict deep-copies the payload
        value = getattr(record, col)
        if col == "body" and record.body_json is not None:
            value = record.body_json
        elif col in JSON_COLUMNS and value is not None:
            value = fastjson.dumps(value)
        out.append(value)
    return out


def record_from_row(row: tuple[Any, ...]) -> JournalRecord:
    """A row read back (``COLUMNS`` order) as a record; JSON columns decoded."""
    values = dict(zip(COLUMNS, row, strict=True))
    for col in JSON_COLUMNS:
        if values[col] is not None:
            values[col] = json.loads(values[col])
    return JournalRecord(**values)
