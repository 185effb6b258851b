"""One exception hierarchy for every failure of a call to the router.

Every error carries the HTTP ``status`` (None when no answer came back), the API's error
``code`` and ``message``, ``retry_after`` (seconds, from the error body or the
``Retry-After`` header), the ``details`` of a 422 and the envelope's ``data`` (a refused
submission's ``{"status": "rejected", ...}``).
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    """Base of every client error."""

    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        details: list[dict[str, Any]] | None = None,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code
        self.retry_after = retry_after
        self.details = details or []
        self.data = data

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        code = f" {self.code}" if self.code else ""
        return f"{where}{code}: {self.message}"


class TransportError(RouterError):
    """No answer: connection refused or reset, timeout (after the configured retries)."""


class WaitTimeout(RouterError):
    """``wait`` gave up before the request reached a terminal state."""


class ApiError(RouterError):
    """The router answered with an error envelope."""


class BadRequest(ApiError):
    """400, 413, 415, 422: the call itself is wrong; retrying cannot help."""


class Unauthorized(ApiError):
    """401: no key, or a wrong one."""


class Forbidden(ApiError):
    """403: the key may not do this."""


class NotFound(ApiError):
    """404: no such request, GPU or user, or not the caller's."""


class Conflict(ApiError):
    """409: request_id reused with another body, result not ready, GPU busy."""


class RateLimited(ApiError):
    """429: rate limit, quota or queue bound reached; ``retry_after`` says when to retry."""


class Unavailable(ApiError):
    """503: no capacity now, not ready, journal down (with ``retry_after``), or
    ``incompatible`` (no GPU could ever serve it; no ``retry_after``)."""


class ServerError(ApiError):
    """Any other 5xx."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    415: BadRequest,
    422: BadRequest,
    429: RateLimited,
    503: Unavailable,
}


def error_class(status: int) -> type[ApiError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ApiError
