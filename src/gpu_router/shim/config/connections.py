"""The ``connections`` section: limits on what one HTTP connection may hold of the router
(issue 14). Enforced by ``shim.http.connections`` (header size, count and deadline, idle
connections, connection caps) and by the body reader (``body_timeout_s``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .sections import ConfigSection


class ConnectionsSection(ConfigSection):
    # request line plus headers, bytes; more answers 431 and the connection is closed
    max_header_bytes: Annotated[int, Field(ge=1024, le=1 << 24)] = 16_384
    # header lines per request; more answers 431
    max_headers: Annotated[int, Field(ge=8, le=10_000)] = 100
    # s from a request's first byte to the end of its headers; later answers 408 (slowloris)
    header_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # s to receive a whole body once its headers are in; later answers 408
    body_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # s a connection may stay open with no request on it (before the first, between two)
    idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # open connections in all; more are answered 503 and closed
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 8_192
    # open connections from one client address; more are answered 503 and closed
    max_connections_per_client: Annotated[int, Field(ge=1, le=1_000_000)] = 1_024

    @model_validator(mode="after")
    def _caps(self) -> ConnectionsSection:
        if self.max_connections_per_client > self.max_connections:
            raise ValueError(
                f"max_connections_per_client ({self.max_connections_per_client}) must not "
                f"exceed max_connections ({self.max_connections})"
            )
        return self
