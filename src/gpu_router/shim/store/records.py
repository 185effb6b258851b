"""What a store keeps: :class:`JournalRecord` (one request), the terminal states, and the
errors a store raises. Nothing here depends on how or where rows are stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("completed", "failed", "cancelled")


def request_key(user_id: str, request_id: str) -> str:
    """The store's key of a user's request: ``<request_id>/<user_id>``. Request ids are
    unique per user, not globally (issue 14); ids and user ids cannot hold ``/``, so the
    key is unambiguous, and the keys of one request_id sort together (``Store.latest``)."""
    return f"{request_id}/{user_id}"


def client_id(key: str) -> str:
    """The request_id its user chose (or was given) of a store key (:func:`request_key`);
    a key from before per-user ids (no ``/``) is itself."""
    return key.split("/", 1)[0]


@dataclass(slots=True)
class JournalRecord:
    """One request's row, under ``request_id``: the store key :func:`request_key` (the
    id the client knows is :attr:`client_request_id`). ``body`` is the validated
    submission (a JSON object),
    ``answer`` the data of the first 200 answer (replayed to an identical
    re-submission); times are wall-clock epoch seconds."""

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
    body_json: str | None = None  # not stored: ``body`` already encoded (saves a dumps)
    #: not stored: the GPUs earlier attempts ran on, while this process holds the record
    rerouted_from: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def client_request_id(self) -> str:
        """The request_id as its user knows it (the API's ``request_id``)."""
        return client_id(self.request_id)


#: the name the store's protocol uses for it
StoredRequest = JournalRecord


class JournalError(Exception):
    """The store could not be written: the request must not be acknowledged."""


class DuplicateRequest(JournalError):
    """A new request's request_id has a row already (one no longer in memory)."""


class StoreFenced(JournalError):
    """The database refused a write of a leader whose lease epoch is no longer the
    newest (another router leads): nothing of it was written."""


#: told ``None`` once a staged insert is committed, or the error that lost it
Done = Callable[[JournalError | None], None]
