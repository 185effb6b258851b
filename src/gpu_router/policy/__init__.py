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
from .health import HardSignal, calculate_health_score, health_status, is_critical_xid
from .models import ModelsConfig
from .outlier import OutlierConfig
from .queue import DEFAULT_ADMISSION_SHARE, DEFAULT_MAX_WAIT_S, CentralQueue, QueueConfig
from .quota import SEED_ADMIN_ALIASES, QuotaLimits
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
from .views import FleetSummary, GpuView

__all__ = [
    "DEFAULT_ADMISSION_SHARE",
    "DEFAULT_MAX_WAIT_S",
    "DEFAULT_STRATEGY",
    "PRIORITIES",
    "SEED_ADMIN_ALIASES",
    "STRATEGIES",
    "Abort",
    "Action",
    "CentralQueue",
    "Decision",
    "Dispatch",
    "Enqueue",
    "Finished",
    "FleetSummary",
    "GpuState",
    "GpuStatus",
    "GpuView",
    "HardSignal",
    "InvalidValue",
    "ModelsConfig",
    "OutlierConfig",
    "Placement",
    "QueueConfig",
    "QuotaLimits",
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
    "calculate_health_score",
    "health_status",
    "is_critical_xid",
    "make_strategy",
]
