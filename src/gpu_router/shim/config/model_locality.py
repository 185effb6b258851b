"""The `model_locality` section: the policy's Model Manager and model residency
(`policy.ModelsConfig`, docs/policy.md "Model locality"). Off by default.

With ``enabled`` the router keeps each GPU's resident models from its own placements
(an LRU cache of ``cache_share`` of the GPU's memory) and the locality strategies
(`load_balancer.strategy`: warm-first, locality-cost, locality-replicate) route by it.
Each job then names the model to have resident (and what to evict); the reference
worker loads it and reports the load time, which the Model Manager learns.

Every ``report_interval`` s the service reads what each worker holds (an HTTP worker's
``GET /health`` ``models``, a registered worker's heartbeat, the virtual fleet's) and
the router's residency follows it (``Router.report_models``): a worker that restarted
empty makes the next request for its models a cold start. A report taken less than
``report_grace_s`` after a load ended, or during a load the router started, does not
erase that model.

On a virtual fleet (``gpu_monitoring.source: virtual``) the virtual GPUs load the models
too: each load takes ``default_load_s`` (modelled seconds), or a time drawn from the
measured latencies of ``virtual_load_times`` (a CSV under the data directory, e.g.
``traces/alibaba_genai_2026_basemodel_load_ms.csv``) with the service's ``seed``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .sections import ConfigSection


class VirtualLoadTimes(ConfigSection):
    path: str  # a CSV; relative: under the data directory
    column: str = "value"
    unit_s: Annotated[float, Field(gt=0)] = 0.001  # seconds per unit (ms)


class ModelLocalitySection(ConfigSection):
    enabled: bool = False
    default_memory_mb: Annotated[float, Field(ge=0)] = 6_500.0  # weights of an unknown model
    default_load_s: Annotated[float, Field(ge=0)] = 22.7  # load time of an unknown model, s
    cache_share: Annotated[float, Field(gt=0, le=1)] = 0.5  # of each GPU's memory
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.2  # EWMA step of learned load times
    # model id -> {memory_mb, load_s, gpu_types, min_compute_capability}
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)
    report_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0  # s between reads
    report_grace_s: Annotated[float, Field(ge=0, le=3600)] = 2.0
    virtual_load_times: VirtualLoadTimes | None = None
