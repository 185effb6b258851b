"""The GPU source a config names: ``gpu_monitoring.source`` is virtual, nvml or monitoring.

Each source module is imported only when chosen, so a service on virtual GPUs never
loads NVML. Periods are seconds.
"""

from __future__ import annotations

from typing import Any

from gpu_router.shim.config import GpuMonitoringSection, ModelLocalitySection
from gpu_router.shim.gpu_sources.base import GpuSource


def source_from_config(
    gm: GpuMonitoringSection,
    virtual_gpus: int | None = None,
    models: ModelLocalitySection | None = None,
    seed: int = 0,
) -> GpuSource:
    """The GPU source ``gm`` asks for; ``virtual_gpus`` forces a virtual fleet of that size.
    A virtual fleet loads models as ``models`` (model locality on) says, seeded by ``seed``."""
    if virtual_gpus is not None or gm.source == "virtual":
        from gpu_router.shim.gpu_sources.virtual import VirtualFleet

        kw: dict[str, Any] = {}
        if models is not None and models.enabled:
            kw = _virtual_models(models, seed)
        n = virtual_gpus or gm.virtual_gpus
        return VirtualFleet(n, period_s=min(gm.update_interval, 0.5), **kw)
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


def _virtual_models(models: ModelLocalitySection, seed: int) -> dict[str, Any]:
    """The virtual fleet's model loading: cache share, load time or measured times."""
    import numpy as np

    kw: dict[str, Any] = {
        "model_cache_share": models.cache_share,
        "model_load_s": models.default_load_s,
        "model_rng": np.random.default_rng(seed),
    }
    vt = models.virtual_load_times
    if vt is not None:
        from gpu_router.sim.model_loads import LoadTimes
        from gpu_router.sim.scenario import ModelLoadSpec

        spec = ModelLoadSpec(path=vt.path, column=vt.column, unit_s=vt.unit_s)
        kw["model_load_times"] = LoadTimes.from_spec(spec)
    return kw
