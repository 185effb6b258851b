"""Pure decision logic shared by the simulator and the service.

No I/O, no clock, no global random state: time (``now``, seconds) and a
``numpy.random.Generator`` are passed in. ``tests/policy/test_purity.py`` enforces it.
"""

from .decisions import Abort, Action, Decision, Dispatch, Enqueue, Finished, Placement, Reject
from .decisions import RejectCode
from .errors import InvalidValue, RouterError
from .queue import CentralQueue, QueueConfig
from .records import RequestSnapshot
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
    "DEFAULT_STRATEGY", "PRIORITIES", "STRATEGIES", "Abort", "Action", "CentralQueue",
    "Decision", "Dispatch", "Enqueue", "Finished", "GpuState", "GpuStatus", "InvalidValue",
    "Placement", "QueueConfig", "Reject", "RejectCode", "Request", "RequestSnapshot",
    "RequestState", "RequestType", "ResourceRequirements", "RouterError", "make_strategy",
]


def __getattr__(name: str):  # Router and its config load on first use
    if name in ("Router",):
        from .router import Router
        return Router
    if name in ("RouterConfig", "RetryConfig"):
        from . import config
        return getattr(config, name)
    raise AttributeError(name)
