"""One GPU as the NVML source tracks it, and the one wrapper every NVML query goes through.

:class:`NvmlDevice` holds a GPU's handle, its static facts (name, UUID, compute
capability, total memory in MB), the queries it answered ``NVMLError_NotSupported``
(never asked again), its latched hard signals and its recent error history.
:func:`query` makes one call: None when unsupported or failing, :class:`Lost` when the
GPU is gone (``NVMLError_GpuIsLost``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpu_router.policy import GpuState

log = logging.getLogger(__name__)

MB = 2**20  # bytes


class Lost(Exception):
    """A call answered NVMLError_GpuIsLost."""


@dataclass
class NvmlDevice:
    """What the source knows of one GPU between samples."""

    index: int
    gpu_id: str
    handle: Any
    name: str = "GPU"
    uuid: str | None = None
    compute_capability: tuple[int, int] = (0, 0)
    memory_total_mb: float | None = None
    event_set: Any = None
    unsupported: set[str] = field(default_factory=set)
    ecc_corrected: int | None = None
    held: dict[str, str] = field(default_factory=dict)  # latched hard signals: kind -> detail
    recent: deque[bool] = field(default_factory=deque)  # a new error in each recent sample
    last: GpuState | None = None
    details: dict[str, Any] = field(default_factory=dict)


def query(nv: Any, dev: NvmlDevice, key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """One NVML call: None when unsupported (then never asked again) or failing."""
    if key in dev.unsupported:
        return None
    try:
        return fn(*args)
    except nv.NVMLError_NotSupported:
        dev.unsupported.add(key)
        dev.details["unsupported"] = sorted(dev.unsupported)
        return None
    except nv.NVMLError_GpuIsLost as exc:
        raise Lost(str(exc)) from exc
    except nv.NVMLError as exc:
        log.debug("%s: %s failed: %s", dev.gpu_id, key, exc)
        return None


def text(value: Any) -> Any:
    """NVML strings may come as bytes (older bindings): decoded, others as they are."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
