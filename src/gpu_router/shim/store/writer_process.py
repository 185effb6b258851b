"""The journal writer as a child process: group commit without sharing the GIL.

A writer *thread* in the service's process (an earlier design, since removed) needed the
GIL again after every SQLite call (BEGIN, each multi-row statement, COMMIT), and the event
loop holds it most of the time under load: measured at 1,000 requests/s, the writer
thread spent about 60% of each commit waiting for the GIL (not for a CPU), so an
acknowledgement waited milliseconds for a commit that costs about 0.15 ms. A child
process has its own interpreter, so its commits run while the event loop runs; without
one (``shim.store.group_commit``), batches are committed on the event loop.

Protocol, over two pipes, each message a 4-byte big-endian length and a pickle:

- service -> writer: ``(seq, inserts, updates)``: a batch's new rows as
  ``(request_id, values)`` and its updated rows (``rows.mutable_row`` tuples);
- writer -> service: ``("ack", seq, failures)`` once the batch is committed (or failed),
  ``failures`` the positions of inserts that failed as ``(index, duplicate, message)``;
  and ``("lost", messages)`` for updates that could not be committed.

The writer merges whatever batches have arrived while it committed into one transaction,
and answers every batch in order. It exits when the service's end of the command pipe
closes (the service stopped, or was killed), after committing what it has read.
The service side is :class:`WriterProcess`; ``shim.store.group_commit`` decides what to send.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from gpu_router.shim.store.batch import StagedBatch
from gpu_router.shim.store.records import DuplicateRequest, JournalError

logger = logging.getLogger(__name__)
_HEADER = struct.Struct(">I")
_READ = 1 << 16


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class _Frames:
    """Reassembles length-prefixed messages from the bytes read so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out = []
        at = 0
        while len(buf) - at >= 4:
            (n,) = _HEADER.unpack_from(buf, at)
            if len(buf) - at - 4 < n:
                break
            out.append(pickle.loads(bytes(buf[at + 4 : at + 4 + n])))  # noqa: S301 - our child
            at += 4 + n
        del buf[:at]
        return out


class WriterProcess:
    """The service's end: sends batches, reads answers on the event loop (or blocking, in
    :meth:`wait_until`), and notices the child's death (EOF on its answer pipe)."""

    def __init__(
        self,
        path: str,
        *,
        wal: bool,
        synchronous: str,
        checkpoint_interval_s: float | None,
        on_message: Callable[[Any], None],
        on_death: Callable[[], None],
    ) -> None:
        cmd_r, self._cmd_w = os.pipe()
        try:
            self._ack_r, ack_w = os.pipe()
        except OSError:
            os.close(cmd_r)
            os.close(self._cmd_w)
            raise
        args = [
            sys.executable,
            "-m",
            __name__,
            str(cmd_r),
            str(ack_w),
            path,
            "1" if wal else "0",
            synchronous,
            str(checkpoint_interval_s or 0),
            str(os.getpid()),
        ]
        try:
            self.proc = subprocess.Popen(args, pass_fds=(cmd_r, ack_w), close_fds=True)
        except BaseException:
            os.close(self._cmd_w)
            os.close(self._ack_r)
            raise
        finally:
            os.close(cmd_r)
            os.close(ack_w)
        os.set_blocking(self._cmd_w, False)
        os.set_blocking(self._ack_r, False)
        self._out = bytearray()  # framed messages not yet taken by the pipe
        self._frames = _Frames()
        self._on_message = on_message
        self._on_death = on_death
        self._loop: Any = None  # the event loop our fds are registered with
        self._writer_registered = False
        self.alive = True

    # -- sending ------------------------------------------------------------------------

    def send(self, obj: Any, loop: Any = None) -> None:
        """Queue a message; it goes out now if the pipe takes it, else when it drains."""
        if not self.alive:
            return
        if loop is not None and loop is not self._loop:  # the first loop, or a new one
            self._unregister()
            self._loop = loop
            loop.add_reader(self._ack_r, self._readable)
        self._out += _frame(obj)
        self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                n = os.write(self._cmd_w, self._out)
                del self._out[:n]
        except BlockingIOError:
            pass
        except OSError:  # EPIPE: the child is gone; its EOF on the answer pipe tells
            self._out.clear()
        want = bool(self._out) and self._loop is not None
        if want != self._writer_registered:
            if want:
                self._loop.add_writer(self._cmd_w, self._flush)
            else:
                self._loop.remove_writer(self._cmd_w)
            self._writer_registered = want

    # -- receiving ----------------------------------------------------------------------

    def _readable(self) -> None:
        """Read what is there, hand each message over; EOF means the child is dead."""
        while self.alive:
            try:
                data = os.read(self._ack_r, _READ)
            except BlockingIOError:
                return
            if not data:
                self._died()
                return
            for msg in self._frames.feed(data):
                try:
                    self._on_message(msg)
                except Exception:  # one bad answer must not drop the ones after it
                    logger.exception("journal writer answer not handled: %r", msg[:2])

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._unregister()
        self._on_death()

    def wait_until(self, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Block (the caller's thread) sending and reading until ``done()`` or the child
        is dead."""
        while self.alive and not done():
            wants_write = [self._cmd_w] if self._out else []
            readable, writable, _ = select.select([self._ack_r], wants_write, [], timeout_s)
            if not readable and not writable:
                raise TimeoutError(f"journal writer silent for {timeout_s} s")
            if writable:
                self._flush()
            if readable:
                self._readable()

    # -- stopping -------------------------------------------------------------------------

    def _unregister(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._ack_r)
            if self._writer_registered:
                self._loop.remove_writer(self._cmd_w)
        self._writer_registered = False
        self._loop = None

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is queued, close the command pipe (the child commits what it read and
        exits) and wait for the child."""
        if self._out and self.alive:  # (reading answers meanwhile: no deadlock)
            self.wait_until(lambda: not self._out, timeout_s)
        self._unregister()
        os.close(self._cmd_w)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._ack_r)
        self.alive = False


# -- the child ------------------------------------------------------------------------------


def _read_all(fd: int, frames: _Frames, block: bool) -> tuple[list[Any], bool]:
    """Messages available on ``fd`` (waiting for the first if ``block``), and whether the
    pipe reached EOF."""
    msgs: list[Any] = []
    os.set_blocking(fd, block)
    while True:
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return msgs, False
        if not data:
            return msgs, True
        msgs.extend(frames.feed(data))
        if msgs and block:  # got something: take the rest without waiting
            block = False
            os.set_blocking(fd, False)


def _commit(journal: Any, msgs: list[Any]) -> bytes:
    """Commit the batches of ``msgs`` in one transaction; their answers, framed."""
    failures: dict[int, list[tuple[int, bool, str]]] = {}

    def fate_of(seq: int, n: int, fate: JournalError | None) -> None:
        if fate is not None:
            dup = isinstance(fate, DuplicateRequest)
            failures.setdefault(seq, []).append((n, dup, str(fate)))

    batch = StagedBatch([], {})
    for seq, inserts, updates in msgs:
        batch.inserts.extend(
            (rid, values, partial(fate_of, seq, n)) for n, (rid, values) in enumerate(inserts)
        )
        batch.updates.update((row[-1], row) for row in updates)
    try:
        fates = journal.commit_batch(batch)
    except Exception as exc:  # commit_batch reports SQLite errors as fates; anything
        err = JournalError(f"journal writer: {exc!r}")  # else fails this batch only
        fates = [(done, err) for _rid, _row, done in batch.inserts if done is not None]
    for done, fate in fates:
        done(fate)
    return b"".join(_frame(("ack", seq, failures.get(seq, []))) for seq, _, _ in msgs)


def _serve(cmd_fd: int, ack_fd: int, journal: Any) -> None:
    frames = _Frames()
    lost: list[str] = []
    journal.on_lost = lost.extend
    eof = False
    while not eof:
        msgs, eof = _read_all(cmd_fd, frames, block=True)
        if not msgs:
            continue
        answer = _commit(journal, msgs)
        if lost:
            answer += _frame(("lost", list(lost)))
            lost.clear()
        view = memoryview(answer)
        while view:  # a blocking pipe; a write may still be cut short by a signal
            view = view[os.write(ack_fd, view) :]


def _die_with(parent: int) -> None:
    """Be killed when the service dies (Linux), so that a killed and restarted service
    never shares the journal with its old writer: nothing the writer holds then has been
    acknowledged. (EOF on the command pipe stops it anyway, but only once it has
    committed what it read.)"""
    with contextlib.suppress(Exception):  # not Linux: EOF alone
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl
        sys.exit(0)


def main(argv: list[str]) -> int:
    # Ctrl-C and a stop signal go to the service, which then closes our command pipe: we
    # stop at its EOF, after committing what it sent (its shutdown flushes through us)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cmd_fd, ack_fd = int(argv[0]), int(argv[1])
    path, wal, synchronous, interval = argv[2], argv[3] == "1", argv[4], float(argv[5])
    _die_with(int(argv[6]))
    from gpu_router.shim.store.journal import Journal

    journal = Journal(
        path, wal=wal, synchronous=synchronous, checkpoint_interval_s=interval or None
    )
    try:
        _serve(cmd_fd, ack_fd, journal)
    except BrokenPipeError:  # the service is gone: nobody to answer
        pass
    finally:
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
