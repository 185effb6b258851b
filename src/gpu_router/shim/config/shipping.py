"""Shipping to the Logging and Monitoring System (integration plan, seed 000, 2.3): how logs
(``logging.shipping``) and metrics (the ``metrics`` section) are batched, buffered and
retried. A receiver that is down costs dropped items, counted in
``gpu_router_shipping_dropped_total{kind}``; the API never waits for it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .sections import ConfigSection


class ShippingOptions(ConfigSection):
    """``batch`` items per POST at most, sent at least every ``flush_interval_s``;
    ``buffer`` items held while the receiver is slow or down (more are dropped); a failed
    POST (connection error, timeout, 429, 5xx) is tried ``retries`` more times,
    ``backoff_s * 2**n`` apart (at most ``max_backoff_s``), then its items are dropped."""

    batch: Annotated[int, Field(ge=1, le=100_000)] = 100
    buffer: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    flush_interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    retries: Annotated[int, Field(ge=0, le=100)] = 3
    backoff_s: Annotated[float, Field(ge=0, le=3600)] = 0.5
    max_backoff_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 2.0

    @model_validator(mode="after")
    def _backoff(self) -> ShippingOptions:
        if self.max_backoff_s < self.backoff_s:
            raise ValueError("max_backoff_s must be >= backoff_s")
        return self


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value


class MetricsSection(ConfigSection):
    """Metric push: with ``url`` set, a snapshot of every metric the router exports at
    ``/metrics`` is POSTed to ``{url}/metrics`` every ``interval_s`` (as JSON)."""

    url: str | None = None  # Monitoring System base URL (None: no push)
    interval_s: Annotated[float, Field(gt=0, le=86_400)] = 15.0
    shipping: ShippingOptions = ShippingOptions()

    _url = field_validator("url")(_http_url)


class LoggingSection(ConfigSection):
    """Logs: JSON records on standard error; with ``url`` set, also POSTed in batches (a
    JSON list of records) to ``{url}/logs`` as ``shipping`` says."""

    url: str | None = None  # Logging Service base URL; records are POSTed to {url}/logs
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True
    shipping: ShippingOptions = ShippingOptions()
