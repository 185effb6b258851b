"""Structured JSON logs on standard error, optionally shipped to the Logging Service.

Each record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and whatever was
passed as ``extra={"fields": {...}}`` (request_id, gpu_id, trace_id, ...). With
``logging.url`` set, records are also POSTed in batches to ``{url}/logs`` (integration
plan 2.3.1) by a :class:`~.shipping.Shipper` (``logging.shipping``: batch, bounded buffer,
retries with backoff); a Logging Service that is down costs dropped records, counted in
``gpu_router_shipping_dropped_total{kind="logs"}``, never a slower API.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from gpu_router.shim.config import ShippingOptions
from gpu_router.shim.shipping import Shipper

LOGGER_NAME = "gpu_request_router"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class ShippingHandler(logging.Handler):
    """Hands formatted records to a :class:`~.shipping.Shipper` for ``{url}/logs``."""

    def __init__(self, url: str, options: ShippingOptions | None = None) -> None:
        super().__init__()
        self.shipper = Shipper(url.rstrip("/") + "/logs", "logs", options)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.shipper.put(self.format(record))
        except Exception:  # a record that cannot be formatted: logging's own report
            self.handleError(record)

    def close(self) -> None:
        """What ``logging.shutdown`` and ``logging.config.dictConfig`` call (uvicorn's
        start calls the latter): the buffer is drained for half a second at most, and the
        shipper keeps running (the handler stays on our logger). :meth:`stop` ends it."""
        self.shipper.drain(0.5)
        super().close()

    def stop(self) -> None:
        self.shipper.close()
        self.close()


def setup_logging(
    level: str = "INFO",
    *,
    json_format: bool = True,
    url: str | None = None,
    shipping: ShippingOptions | None = None,
) -> logging.Logger:
    """Configure the service logger (idempotent: earlier handlers of ours are replaced)."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        if isinstance(h, ShippingHandler):
            h.stop()
        else:
            h.close()
    logger.setLevel(level)
    logger.propagate = False
    fmt: logging.Formatter = (
        JsonFormatter()
        if json_format
        else logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    )
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    logger.addHandler(stream)
    if url:
        ship = ShippingHandler(url, shipping)
        ship.setFormatter(JsonFormatter())
        logger.addHandler(ship)
    return logger


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """``logger.log`` with structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
