"""The ``callbacks`` section: where a request's ``callback_url`` may point and how the
callbacks are signed (issue 14). Retries are ``dispatch.callback_retries``,
``callback_backoff`` and ``callback_timeout``; this section bounds them further.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .sections import ConfigSection

Scheme = Literal["http", "https"]


def _both_schemes() -> list[Scheme]:
    return ["http", "https"]


_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


class CallbacksSection(ConfigSection):
    # URL schemes a callback_url may use
    allowed_schemes: list[Scheme] = Field(default_factory=_both_schemes)
    # host names a callback_url may name ("api.example.com", "*.example.com"); empty: any
    allowed_hosts: list[str] = Field(default_factory=list)
    # networks a callback may reach although they are loopback, link-local, private or
    # otherwise not global (CIDRs, e.g. "10.1.2.0/24"); checked on the resolved address
    allowed_networks: list[str] = Field(default_factory=list)
    # HMAC-SHA256 key of the X-GPU-Router-Signature header (16+ characters); none: unsigned
    signing_secret: Annotated[str | None, Field(min_length=16, max_length=4096)] = None
    # or a file whose first line is that key
    signing_secret_file: str | None = None
    # deliveries in flight at once (more wait their turn)
    max_concurrent: Annotated[int, Field(ge=1, le=10_000)] = 64
    # the longest wait between two tries (s): the backoff doubles up to this
    max_backoff_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            name = host.strip().lower().rstrip(".")
            if not _HOST.match(name):
                raise ValueError(f"{host!r} is not a host name (or *.domain)")
            out.append(name)
        return out

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> CallbacksSection:
        if self.signing_secret is not None and self.signing_secret_file is not None:
            raise ValueError("set signing_secret or signing_secret_file, not both")
        if not self.allowed_schemes:
            raise ValueError("allowed_schemes: at least one scheme")
        return self
