"""New requests acknowledged from the intake log whose rows are not committed yet.

``shim.store.group_commit`` appends a new request's row to the intake log
(``shim.store.intake_log``) and answers 200 at once; the row rides to the writer process
with a later batch. Until that batch is committed, :class:`IntakeAcks` keeps what
memory must: the ids in flight (a re-submission meanwhile is a duplicate), the rows whose
commit failed (staged again until one commits; meanwhile no segment is deleted, and new
requests wait for their own commit), and the closed segments, deleted once every row in
them is committed.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from gpu_router.shim.store import intake_log
from gpu_router.shim.store.batch import StagedBatch
from gpu_router.shim.store.intake_log import IntakeLog
from gpu_router.shim.store.journal import Journal
from gpu_router.shim.store.records import DuplicateRequest, JournalError, JournalRecord
from gpu_router.shim.store.rows import row_values

logger = logging.getLogger(__name__)


class IntakeAcks:
    """The intake log and its rows in flight; every call on the event loop's thread."""

    def __init__(
        self,
        journal: Journal,
        directory: str | None = None,
        segment_bytes: int = intake_log.SEGMENT_BYTES,
    ) -> None:
        self._journal = journal
        #: hash() of every request_id with a row or in the log: a new id is told apart
        #: from a taken one in memory (a query per submission, on the event loop, waited
        #: out the writer's locks for milliseconds at times); about 70 bytes each
        self._known = {hash(rid) for rid in journal.request_ids()}
        self.log = IntakeLog(
            intake_log.prefix(journal.path, directory), segment_bytes=segment_bytes
        )
        self._inflight: set[str] = set()  # ids in the log, not committed yet
        self._closed: deque[tuple[str, int]] = deque()  # (segment path, last batch in it)
        #: logged rows whose commit failed, staged again until one commits
        self.retrying: set[str] = set()

    def append(self, record: JournalRecord) -> list[Any]:
        """Log a new request's row (one ``write()``); its values. Raises
        :class:`DuplicateRequest` if the id is taken, :class:`JournalError` if the row
        could not be logged."""
        rid = record.request_id
        known = hash(rid)
        try:  # a known hash is this id (taken) or, hardly ever, another one: the rows say
            if known in self._known and (
                rid in self._inflight or rid in self._journal.stored_ids([rid])
            ):
                raise DuplicateRequest(f"request_id {rid!r} is taken")
            values = row_values(record)
            self.log.append(values)
        except JournalError:
            raise
        except Exception as exc:  # the journal's read failed (SQLite error)
            raise JournalError(f"journal: {exc!r}") from exc
        self._inflight.add(rid)
        self._known.add(known)
        return values

    @property
    def full(self) -> bool:
        """Whether the current segment is due to be closed."""
        return self.log.size >= self.log.segment_bytes

    def rotate(self, last_batch: int) -> None:
        """Close the current segment; every row in it is in batches up to ``last_batch``."""
        self._closed.append((self.log.rotate(), last_batch))

    def failed(self, rid: str, err: JournalError | None) -> bool:
        """Note the fate of a logged row's commit; whether to stage the row again (its
        commit failed: retried until one commits, and its segment stays meanwhile, so a
        restart would replay it)."""
        if err is None:
            self.retrying.discard(rid)
            return False
        if isinstance(err, DuplicateRequest):  # another row holds the id: nothing to retry
            logger.error("journal: acknowledged request %s has no row of its own: %s", rid, err)
            self.retrying.discard(rid)
            return False
        if rid not in self.retrying:
            logger.error(
                "journal: acknowledged request %s not committed yet, retrying: %s", rid, err
            )
        self.retrying.add(rid)
        return True

    def settled(self, batch: StagedBatch, committed: int) -> None:
        """Batches up to ``committed`` are committed (or failed): the batch's logged rows
        are no longer in flight, and the segments they complete can go."""
        for rid, _values, _done in batch.inserts:
            if rid not in self.retrying:
                self._inflight.discard(rid)
        segments = self._closed
        while segments and segments[0][1] <= committed and not self.retrying:
            intake_log.remove_segment(segments.popleft()[0])

    def close(self) -> None:
        """Close the log; delete it unless rows in it failed to commit (those are left
        for the next start's replay). Call once everything is committed."""
        if self.retrying:
            self.log.close()
        else:
            self.log.remove_all()
