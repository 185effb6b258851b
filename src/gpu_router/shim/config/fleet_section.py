"""``fleet``: workers that register with the router at run time (elastic fleet)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .sections import ConfigSection


class FleetSection(ConfigSection):
    """A worker registered through ``POST /api/v1/workers/register`` heartbeats every
    ``heartbeat_interval`` s; one silent for ``heartbeat_timeout`` s leaves the fleet (its
    work is re-routed) until it registers again."""

    heartbeat_interval: Annotated[float, Field(gt=0, le=3600)] = 2.0
    heartbeat_timeout: Annotated[float, Field(gt=0, le=86400)] = 10.0

    @model_validator(mode="after")
    def _timeout(self) -> FleetSection:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")
        return self
