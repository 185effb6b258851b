"""Staged writes and their batch: what group commit gathers between two commits.

:class:`Staging` only queues writes; :meth:`Staging.take` turns what is queued into a
:class:`StagedBatch` of row values (built on the caller's thread, so the rows are a
consistent snapshot of the records), which the journal commits in one transaction
(:meth:`~.journal.Journal.commit_batch`, in the writer process or on the event loop). A
staged update rewrites the changing columns from the record object, which the service
keeps current, so several changes of one request between two batches cost one row write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpu_router.shim.store.records import Done, JournalRecord
from gpu_router.shim.store.rows import mutable_row, row_values


@dataclass(slots=True)
class StagedBatch:
    """Staged writes as row values: new rows ``(request_id, values, done)`` in staging
    order, and the changing columns of updated rows (``rows.mutable_row``) by request_id."""

    inserts: list[tuple[str, list[Any], Done | None]]
    updates: dict[str, tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates)

    def extend(self, later: StagedBatch) -> None:
        """Append a later batch (its updates supersede this one's)."""
        self.inserts.extend(later.inserts)
        self.updates.update(later.updates)


class Staging:
    """Writes queued for the next batch."""

    def __init__(self) -> None:
        self._inserts: list[tuple[JournalRecord, Done | None, list[Any] | None]] = []
        self._dirty: dict[str, JournalRecord] = {}  # staged updates: rows to rewrite

    def __len__(self) -> int:
        """Rows staged (a request both inserted and updated counts twice)."""
        return len(self._inserts) + len(self._dirty)

    def insert(
        self, record: JournalRecord, done: Done | None = None, values: list[Any] | None = None
    ) -> None:
        """Queue a new request. Its row is built from ``record`` when the batch is taken,
        so changes made to it meanwhile are in it; or it is ``values``, built already,
        and such changes go as an update after it."""
        self._inserts.append((record, done, values))

    def update(self, record: JournalRecord) -> None:
        """Queue a rewrite of the row's changing columns (``rows.MUTABLE``) from
        ``record``: the record is the truth, and any number of changes cost one write."""
        self._dirty[record.request_id] = record

    def take(self) -> StagedBatch:
        """Everything staged, as row values built now; the staging is emptied. A record
        both inserted and updated is written once, by its insert (which has its latest
        state)."""
        inserts, dirty = self._inserts, self._dirty
        self._inserts, self._dirty = [], {}
        rows = []
        for record, done, values in inserts:
            rid = record.request_id
            if values is None:
                if dirty.get(rid) is record:
                    del dirty[rid]
                values = row_values(record)
            rows.append((rid, values, done))
        return StagedBatch(rows, {rid: mutable_row(r) for rid, r in dirty.items()})
