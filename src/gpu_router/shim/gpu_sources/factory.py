"""The GPU source a config names: ``gpu_monitoring.source`` is virtual, nvml or monitoring.

Each source module is imported only when chosen, so a service on virtual GPUs never
loads NVML. Periods are seconds.
"""

from __future__ import annotations

from gpu_router.shim.config import GpuMonitoringSection
from gpu_router.shim.gpu_sources.base import GpuSource


def source_from_config(gm: GpuMonitoringSection, virtual_gpus: int | None = None) -> GpuSource:
    """The GPU source ``gm`` asks for; ``virtual_gpus`` forces a virtual fleet of that size."""
    if virtual_gpus is not None or gm.source == "virtual":
        from gpu_router.shim.gpu_sources.virtual import VirtualFleet

        return VirtualFleet(virtual_gpus or gm.virtual_gpus, period_s=min(gm.update_interval, 0.5))
    if gm.source == "nvml":
        from gpu_router.shim.gpu_sources.nvml import NvmlSource

        return NvmlSource(
            period_s=gm.update_interval,
            worker_urls=gm.worker_urls,
            worker_base_port=gm.worker_base_port,
            worker_host=gm.worker_host,
            rescan_s=gm.rescan_interval,
        )
    from gpu_router.shim.gpu_sources.monitoring import MonitoringSource

    return MonitoringSource(
        gm.url,
        period_s=gm.update_interval,
        health_period_s=gm.health_check_interval,
        worker_urls=gm.worker_urls,
    )
