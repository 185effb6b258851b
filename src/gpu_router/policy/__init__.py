"""Pure decision logic shared by the simulator and the service.

No I/O, no clock, no global random state: time (``now``, seconds) and a
``numpy.random.Generator`` are passed in. ``tests/policy/test_purity.py`` enforces it.
"""

from .config import RetryConfig, RouterConfig
from .decisions import (
    Abort,
    Action,
    Decision,
    Dispatch,
    Enqueue,
    Finished,
    Placement,
    Reject,
    RejectCode,
)
from .errors import InvalidValue, RouterError
from .queue import CentralQueue, QueueConfig
from .records import RequestSnapshot
from .router import Router
from .strategies import DEFAULT_STRATEGY, STRATEGIES, make_strategy
from .types import (
    PRIORITIES,
    GpuState,
    GpuStatus,
    Request,
    RequestState,
    RequestType,
    ResourceRequirements,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "PRIORITIES",
    "STRATEGIES",
    "Abort",
    "Action",
    "CentralQueue",
    "Decision",
    "Dispatch",
    "Enqueue",
    "Finished",
    "GpuState",
    "GpuStatus",
    "InvalidValue",
    "Placement",
    "QueueConfig",
    "Reject",
    "RejectCode",
    "Request",
    "RequestSnapshot",
    "RequestState",
    "RequestType",
    "ResourceRequirements",
    "RetryConfig",
    "Router",
    "RouterConfig",
    "RouterError",
    "make_strategy",
]
