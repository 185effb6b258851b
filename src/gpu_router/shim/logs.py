"""Structured JSON logs on standard error, optionally shipped to the Logging Service.

Each record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and whatever was
passed as ``extra={"fields": {...}}`` (request_id, gpu_id, trace_id, ...). With
``logging.url`` set, records are also POSTed in batches to ``{url}/logs`` (integration
plan 2.3.1) from a background thread; a Logging Service that is down costs dropped
records, never a slower API.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import Any

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
    """Buffers formatted records and POSTs them as a JSON list to ``{url}/logs``."""

    def __init__(
        self, url: str, *, batch: int = 100, interval_s: float = 1.0, capacity: int = 10_000
    ) -> None:
        super().__init__()
        self.url = url.rstrip("/") + "/logs"
        self.batch = batch
        self.interval_s = interval_s
        self.queue: queue.Queue[str] = queue.Queue(capacity)
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(self.format(record))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set() or not self.queue.empty():
                items: list[str] = []
                deadline = time.monotonic() + self.interval_s
                while len(items) < self.batch and time.monotonic() < deadline:
                    try:
                        items.append(self.queue.get(timeout=max(0.01, deadline - time.monotonic())))
                    except queue.Empty:
                        if self._stop.is_set():
                            break
                if items:
                    try:
                        client.post(
                            self.url,
                            content="[" + ",".join(items) + "]",
                            headers={"content-type": "application/json"},
                        )
                    except httpx.HTTPError:
                        self.dropped += len(items)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3.0)
        super().close()


def setup_logging(
    level: str = "INFO", *, json_format: bool = True, url: str | None = None
) -> logging.Logger:
    """Configure the service logger (idempotent: earlier handlers of ours are replaced)."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
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
        ship = ShippingHandler(url)
        ship.setFormatter(JsonFormatter())
        logger.addHandler(ship)
    return logger


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """``logger.log`` with structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
