"""Where the service gets GPU state: NVML, the GPU Monitoring Service, or a virtual fleet.

Modules are imported on use (``from gpu_router.shim.gpu_sources.nvml import NvmlSource``)
so that a service on virtual GPUs never loads NVML; ``base`` holds the shared interface.
"""

from .base import (
    ErrorSignal,
    GpuSource,
    JobNotFound,
    JobRefused,
    JobRunner,
    JobStatus,
    SourceError,
    SourceUnavailable,
    WorkerCallError,
    WorkerUnavailable,
)

__all__ = [
    "ErrorSignal",
    "GpuSource",
    "JobNotFound",
    "JobRefused",
    "JobRunner",
    "JobStatus",
    "SourceError",
    "SourceUnavailable",
    "WorkerCallError",
    "WorkerUnavailable",
]
