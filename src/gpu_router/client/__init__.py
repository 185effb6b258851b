"""A Python client of the GPU Request Router's API (docs/api.md), sync and asyncio.

    from gpu_router.client import RouterClient

    with RouterClient("http://127.0.0.1:8000", key) as rc:
        ack = rc.route("alice", "llama-7b", 3)
        done = rc.wait(ack.request_id, timeout=120)

Answers are unwrapped from the ALT_LAS envelope into dataclasses (:mod:`.models`);
every failure is a :class:`RouterError` (:mod:`.errors`) with the HTTP status, the
error code, the message and ``retry_after``. 429 and 503 answers with a retry time are
retried (bounded, :class:`RetryPolicy`), and so are transport errors, a submission with
the same ``request_id``. :func:`verify_callback` checks a callback's signature. This
package imports nothing of the service.
"""

from gpu_router.client._core import RetryPolicy
from gpu_router.client.aio import AsyncRouterClient
from gpu_router.client.callbacks import InvalidSignature, verify_callback
from gpu_router.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RouterError,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from gpu_router.client.models import (
    AdminResult,
    CancelResult,
    Gpu,
    GpuList,
    Health,
    Metrics,
    Quota,
    RequestResult,
    RequestStatus,
    RouteResult,
)
from gpu_router.client.sync import RouterClient

__all__ = [
    "AdminResult",
    "ApiError",
    "AsyncRouterClient",
    "BadRequest",
    "CancelResult",
    "Conflict",
    "Forbidden",
    "Gpu",
    "GpuList",
    "Health",
    "InvalidSignature",
    "Metrics",
    "NotFound",
    "Quota",
    "RateLimited",
    "RequestResult",
    "RequestStatus",
    "RetryPolicy",
    "RouteResult",
    "RouterClient",
    "RouterError",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "verify_callback",
]
