"""The ALT_LAS response envelope and its `meta` block (seed 004, 3.2 and 3.5), plus W3C
trace context (https://www.w3.org/TR/trace-context/).

Every JSON answer is ``{"status", "data", "error", "meta"}``. ``meta`` carries the HTTP
request's id, a timestamp, processing time (total and components), the GPU the request
concerns, the trace id taken from ``traceparent`` (or a new one) and the API version; what
it includes follows the ``api_metadata`` config (enabled, include_in_response,
detail_level, sampling_rate, components).
"""

from __future__ import annotations

import itertools
import os
import random
import re
from dataclasses import dataclass, field
from typing import Any

from gpu_router.shim.config import ApiMetadataSection
from gpu_router.shim.core.clock import iso

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

# Trace and span ids need to be unique, not secret (W3C trace context 3.2.2.3): a PRNG
# seeded from the OS is enough and costs a fraction of ``secrets.token_hex``.
_ids = random.Random(os.urandom(16))


def _hex(bits: int) -> str:
    while True:  # all-zero ids are invalid
        v = _ids.getrandbits(bits)
        if v:
            return f"{v:0{bits // 4}x}"


def new_span_id() -> str:
    return _hex(64)


def new_trace_id() -> str:
    return _hex(128)


_rid_prefix = f"{_ids.getrandbits(32):08x}-{_ids.getrandbits(16):04x}-4{_ids.getrandbits(12):03x}"
_rid_counter = itertools.count(_ids.getrandbits(24))


def new_request_id() -> str:
    """A UUID-shaped id for the ``meta`` block, unique within this process run (random
    prefix, then a counter): cheaper than ``uuid4`` on every answer."""
    n = next(_rid_counter)
    return f"{_rid_prefix}-{0x8000 | (n >> 48) & 0x3FFF:04x}-{n & 0xFFFFFFFFFFFF:012x}"


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C trace context: ``trace_id`` (32 hex), this hop's ``span_id`` (16 hex), flags."""

    trace_id: str
    span_id: str
    flags: str = "01"
    incoming: bool = False  # True when the caller sent a valid traceparent

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The context to send downstream (workers, callbacks): same trace, new span."""
        return TraceContext(self.trace_id, new_span_id(), self.flags, True)


def parse_traceparent(header: str | None) -> TraceContext:
    """The caller's trace continued with a new span, or a new trace when the header is absent
    or invalid (version ff, all-zero ids, wrong shape are invalid per the spec)."""
    if header:
        m = _TRACEPARENT.match(header.strip().lower())
        if m and m.group(1) != "ff" and m.group(2) != _ZERO_TRACE and m.group(3) != _ZERO_SPAN:
            return TraceContext(m.group(2), new_span_id(), m.group(4), True)
    return TraceContext(new_trace_id(), new_span_id(), "01", False)


@dataclass(slots=True)
class Timings:
    """Processing time of one HTTP request, split into named components (ms)."""

    started: float
    components: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        key = f"{name}_ms"
        self.components[key] = self.components.get(key, 0.0) + seconds * 1000.0


class MetaBuilder:
    """Builds the ``meta`` block according to the ``api_metadata`` config.

    detail levels: ``minimal`` = request_id, timestamp, total time, version;
    ``standard`` adds trace_id and the GPU's identity and memory; ``full`` adds the
    time components and the GPU's utilization and temperature. The ``components`` flags
    switch parts off at any level.
    """

    def __init__(self, config: ApiMetadataSection, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random(0)

    def wanted(self) -> bool:
        c = self.config
        if not (c.enabled and c.include_in_response):
            return False
        return c.sampling_rate >= 1.0 or self._rng.random() < c.sampling_rate

    def build(
        self,
        *,
        request_id: str,
        wall_now: float,
        timings: Timings,
        mono_now: float,
        trace: TraceContext,
        gpu: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        c = self.config
        level = c.detail_level
        comps = c.components
        meta: dict[str, Any] = {"request_id": request_id, "timestamp": iso(wall_now)}
        if comps.processing_time.enabled:
            pt: dict[str, Any] = {"total_ms": round((mono_now - timings.started) * 1000.0, 3)}
            if level == "full" and comps.processing_time.include_components:
                pt["components"] = {k: round(v, 3) for k, v in timings.components.items()}
            meta["processing_time"] = pt
        if level != "minimal" and comps.gpu_resources.enabled and gpu is not None:
            res: dict[str, Any] = {k: gpu[k] for k in ("device_id", "device_name") if k in gpu}
            res.update({k: gpu[k] for k in ("memory_used_mb", "memory_total_mb") if k in gpu})
            if level == "full":
                if comps.gpu_resources.include_utilization and "utilization_percent" in gpu:
                    res["utilization_percent"] = gpu["utilization_percent"]
                if comps.gpu_resources.include_temperature and "temperature_c" in gpu:
                    res["temperature_c"] = gpu["temperature_c"]
            meta["gpu_resources"] = res
        if level != "minimal" and comps.tracing.enabled:
            meta["trace_id"] = trace.trace_id
        meta["version"] = c.version
        return meta


def envelope(
    data: Any = None,
    *,
    error: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"status": "success"|"error", "data", "error", "meta"}``."""
    return {
        "status": "error" if error is not None else "success",
        "data": data,
        "error": error,
        "meta": meta,
    }


def error_body(
    code: str, message: str, *, details: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """The ``error`` member: a machine-readable ``code``, a human ``message``, and for bad
    input one ``{"field", "reason"}`` per problem."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    body.update({k: v for k, v in extra.items() if v is not None})
    return body
