"""The intake log: where a new request is made durable before its 200 when a writer
process commits the journal.

With ``synchronous=NORMAL`` (the default) a SQLite commit in WAL mode is a ``write()``
into the WAL file and no fsync: it survives the death of the service (SIGKILL), not an
OS crash or a power loss. Appending the new row to a plain file with one ``write()`` is
the same guarantee, costs a few microseconds on the event loop and wakes nobody. So
``shim.store.group_commit`` appends each new request's row here and acknowledges it at once;
the writer process commits the row to SQLite a little later, with the batch it rides in,
and nobody waits for that. Waiting for the writer process's answer had cost every
acknowledgement a round trip to another process (0.45 ms at the median, several ms at
the 99th percentile on a busy machine, where the writer waits for a CPU).

Where: beside the journal by default, so that it lives as long as the journal's own WAL
does (a container's ``/dev/shm`` goes away with the container). ``journal.intake_dir``
can put it in shared memory (``/dev/shm``) on a host where the service restarts without
its filesystem namespace going away: a ``write()`` there never waits, where one to a file
on ext4 sometimes waits for the filesystem's journal (20-30 ms stalls of the event loop,
a few per 5 s at 1,000 requests/s on the development VM). A row is in the log alone
only until the writer process commits it (``journal.lazy_commit_ms``, 20 ms by default).

The log is a series of segment files ``<prefix>-<n>``, each a run of JSON lines
(one new row each, an object keyed by column name: a row logged by an older version
replays into a journal with more columns). A segment is closed once it
passes ``segment_bytes`` and deleted once every row in it is committed to SQLite; on a
clean stop every segment is deleted. A restarted service first runs :func:`replay`,
which copies into the journal every logged row whose request_id has no row there, and
then resumes unfinished requests as usual. A line cut short (a write that failed
half-way, as on a full disk) was never acknowledged, and is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from gpu_router.shim import fastjson
from gpu_router.shim.store.batch import StagedBatch
from gpu_router.shim.store.records import DuplicateRequest, JournalError, request_key
from gpu_router.shim.store.rows import COLUMNS

logger = logging.getLogger(__name__)
_RID = COLUMNS.index("request_id")
_UID = COLUMNS.index("user_id")
SEGMENT_BYTES = 4 << 20  # about 8,000 requests of a few hundred bytes
SHARED_MEMORY = "/dev/shm"  # noqa: S108 (segments are opened 0600 under a per-journal digest name)


def default_dir(journal_path: str) -> str:
    """The journal's directory."""
    return str(Path(journal_path).resolve().parent)


def prefix(journal_path: str, directory: str | None = None) -> str:
    """The path of the journal's segments but for their number: the journal's file name
    and a digest of its absolute path (two journals of one name never share a log)."""
    real = Path(journal_path).resolve()
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:12]
    where = directory or default_dir(journal_path)
    return str(Path(where) / f"{real.name}-{digest}-intake")


def candidate_prefixes(journal_path: str, directory: str | None = None) -> list[str]:
    """Where a journal's segments may be (the configured place, shared memory, next to
    the journal): a replay looks everywhere, as the setting may have changed."""
    places = (directory, SHARED_MEMORY, default_dir(journal_path))
    return list(dict.fromkeys(prefix(journal_path, where) for where in places))


def all_segments(journal_path: str, directory: str | None = None) -> list[Path]:
    """Every segment of a journal's intake log, wherever it may be, oldest first per place."""
    return [p for pre in candidate_prefixes(journal_path, directory) for p in segment_paths(pre)]


def logged_ids(journal_path: str, directory: str | None = None) -> set[str]:
    """The request_ids in a journal's intake log (those not committed yet, or not known
    to be: a segment goes once all of its rows are)."""
    return {
        values[_RID] for p in all_segments(journal_path, directory) for values in read_segment(p)[0]
    }


def segment_paths(prefix: str) -> list[Path]:
    """The segments of ``prefix`` on disk, oldest first."""
    base = Path(prefix)
    found = []
    if base.parent.is_dir():
        for p in base.parent.glob(f"{base.name}-*"):
            suffix = p.name.rsplit("-", 1)[1]
            if suffix.isdigit():
                found.append((int(suffix), p))
    return [p for _, p in sorted(found)]


class IntakeLog:
    """Appends new rows to the current segment; closes and deletes segments."""

    def __init__(self, prefix: str, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.prefix = prefix
        self.segment_bytes = segment_bytes
        existing = segment_paths(prefix)  # (replay has emptied them; never reuse)
        self.number = int(existing[-1].name.rsplit("-", 1)[1]) + 1 if existing else 0
        self._fd = -1
        self.size = 0  # bytes in the current segment
        self._open()

    @property
    def path(self) -> str:
        """The current segment."""
        return f"{self.prefix}-{self.number}"

    def _open(self) -> None:
        try:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            self._fd = -1
            raise JournalError(f"intake log {self.path}: {exc}") from None
        self.size = 0

    def append(self, values: list[Any]) -> None:
        """Write one new row (one ``write()``); raises :class:`JournalError` if the whole
        line did not get written (it then counts as never written)."""
        if self._fd < 0:  # a failed open: try again
            self._open()
        line = fastjson.dumps_bytes(dict(zip(COLUMNS, values, strict=True))) + b"\n"
        try:
            n = os.write(self._fd, line)
        except OSError as exc:
            n, err = -1, exc
        if n != len(line):  # a later line must not run on from a cut one: a new segment
            with_what = f"wrote {n} of {len(line)} bytes" if n >= 0 else str(err)
            self.size += max(n, 0)
            self.rotate()
            raise JournalError(f"intake log {self.path}: {with_what}")
        self.size += n

    def rotate(self) -> str:
        """Close the current segment and start the next; the closed one's path."""
        closed = self.path
        self.close()
        self.number += 1
        try:
            self._open()
        except JournalError:  # the next append tries again, and fails loudly
            logger.exception("intake log: cannot start a new segment")
        return closed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove_all(self) -> None:
        """Close, and delete every segment (everything in them is committed)."""
        self.close()
        for p in segment_paths(self.prefix):
            remove_segment(str(p))


def remove_segment(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:  # left for the next start's replay, which skips what is committed
        logger.exception("intake log: cannot delete %s", path)


def replay(journal: Any, directory: str | None = None) -> int:
    """Copy into ``journal`` the logged rows that it has no row for, then delete the
    segments; the number of rows copied. Raises :class:`JournalError` (and keeps the
    segments) if they could not be committed."""
    paths = all_segments(journal.path, directory)
    if not paths:
        return 0
    rows: dict[str, list[Any]] = {}
    skipped = 0
    old_ids = getattr(journal, "migrated", False)  # the journal's keys were just scoped
    for p in paths:
        logged, cut = read_segment(p)
        skipped += cut
        for values in logged:
            if old_ids and "/" not in values[_RID]:  # logged before per-user request ids
                values[_RID] = request_key(values[_UID], values[_RID])
            rows.setdefault(values[_RID], values)
    stored = journal.stored_ids(list(rows))
    missing = [(rid, values) for rid, values in rows.items() if rid not in stored]
    errors: list[JournalError] = []

    def fate(err: JournalError | None) -> None:
        if err is not None and not isinstance(err, DuplicateRequest):
            errors.append(err)

    if missing:
        batch = StagedBatch([(rid, values, fate) for rid, values in missing], {})
        for done, err in journal.commit_batch(batch):
            done(err)
    if errors:
        raise JournalError(f"intake log replay: {errors[0]}")
    if missing or skipped:
        logger.warning(
            "intake log replayed: %d acknowledged requests copied into the journal, "
            "%d cut-short lines skipped",
            len(missing),
            skipped,
        )
    for p in paths:
        remove_segment(str(p))
    return len(missing)


def read_segment(path: Path) -> tuple[list[list[Any]], int]:
    """The rows logged in a segment (values in ``COLUMNS`` order), and how many lines
    were cut short or unreadable."""
    rows, cut = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        values = _row(line)
        if values is None:
            cut += 1
        else:
            rows.append(values)
    return rows, cut


def _row(line: bytes) -> list[Any] | None:
    """One logged row's values (``COLUMNS`` order; a column the line lacks is None), or
    None for a cut-short or unreadable line."""
    if not line.endswith(b"\n"):
        return None
    try:
        row = json.loads(line)  # the standard library: integers of any size, exactly
    except ValueError:
        return None
    if not isinstance(row, dict) or not isinstance(row.get("request_id"), str):
        return None
    return [row.get(col) for col in COLUMNS]
