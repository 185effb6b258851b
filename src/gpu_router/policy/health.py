"""GPU health: the seed's score (design 4.1) and the hard failure signals (DESIGN 3.5)."""

from __future__ import annotations

from enum import Enum

from .types import GpuState

#: Xid codes NVIDIA documents as needing a GPU reset or node drain (page retirement
#: failures, fallen off the bus, uncontained ECC, GSP errors, ...).
CRITICAL_XIDS = frozenset({48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 123, 136, 140})


class HardSignal(str, Enum):
    """Signals that take a GPU out of service at once, whatever its score."""

    XID_CRITICAL = "xid_critical"
    ECC_UNCORRECTABLE = "ecc_uncorrectable"
    UNREACHABLE = "unreachable"
    WORKER_UNRESPONSIVE = "worker_unresponsive"
    CRASHED = "crashed"


def temperature_score(temp_c: float) -> float:
    """1 below 50 C, falling linearly to 0 at 100 C (seed ``calculate_health_score``)."""
    if temp_c < 50:
        return 1.0
    if temp_c < 100:
        return 1.0 - (temp_c - 50) / 50
    return 0.0


def calculate_health_score(gpu: GpuState) -> float:
    """The seed's health score in [0, 1]: 0.4 temperature + 0.3 power + 0.3 error rate.

    Power score is ``1 - power/limit`` (0.5 when the limit is unknown, i.e. 0).
    """
    power_score = 1.0 - (gpu.power_w / gpu.power_limit_w) if gpu.power_limit_w > 0 else 0.5
    error_score = 1.0 - gpu.error_rate
    return 0.4 * temperature_score(gpu.temperature_c) + 0.3 * power_score + 0.3 * error_score


def health_status(score: float) -> str:
    """The seed API's ``health_status``: healthy (>= 0.7), warning (>= 0.4), critical."""
    if score >= 0.7:
        return "healthy"
    if score >= 0.4:
        return "warning"
    return "critical"


def is_critical_xid(xid: int) -> bool:
    """True when an Xid event means the GPU must leave service."""
    return xid in CRITICAL_XIDS
