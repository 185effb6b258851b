"""Envelope, meta block per api_metadata config, W3C traceparent."""

from __future__ import annotations

import random

from gpu_router.shim.config import ApiMetadataSection
from gpu_router.shim.http.envelope import (
    MetaBuilder,
    Timings,
    envelope,
    error_body,
    iso,
    parse_traceparent,
)

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
GPU = {
    "device_id": "gpu-0",
    "device_name": "H100",
    "memory_used_mb": 10.0,
    "memory_total_mb": 80.0,
    "utilization_percent": 35.8,
    "temperature_c": 65.0,
}


def test_traceparent_continued():
    t = parse_traceparent(TP)
    assert t.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and t.incoming
    assert t.span_id != "00f067aa0ba902b7" and len(t.span_id) == 16
    child = t.child()
    assert child.trace_id == t.trace_id and child.traceparent.startswith("00-4bf92f")


def test_invalid_traceparent_starts_new_trace():
    for bad in (
        None,
        "",
        "garbage",
        TP.replace("00-", "ff-", 1),
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        TP[:-1],
    ):
        t = parse_traceparent(bad)
        assert not t.incoming and len(t.trace_id) == 32 and t.trace_id != "0" * 32


def test_iso():
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso(1748701815.123) == "2025-05-31T14:30:15.123Z"


def build(level="full", **kw):
    cfg = ApiMetadataSection.model_validate({"detail_level": level, **kw})
    timings = Timings(started=10.0)
    timings.add("routing", 0.002)
    return MetaBuilder(cfg).build(
        request_id="r1",
        wall_now=0.0,
        timings=timings,
        mono_now=10.1205,
        trace=parse_traceparent(TP),
        gpu=GPU,
    )


def test_full_meta_matches_seed_shape():
    meta = build()
    assert meta["request_id"] == "r1" and meta["timestamp"] == "1970-01-01T00:00:00.000Z"
    assert meta["processing_time"] == {"total_ms": 120.5, "components": {"routing_ms": 2.0}}
    assert meta["gpu_resources"] == GPU
    assert meta["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert meta["version"] == "1.0"


def test_detail_levels_and_components():
    minimal = build("minimal")
    assert set(minimal) == {"request_id", "timestamp", "processing_time", "version"}
    assert "components" not in minimal["processing_time"]
    standard = build("standard")
    assert "trace_id" in standard and "utilization_percent" not in standard["gpu_resources"]
    off = build(
        components={
            "gpu_resources": {"enabled": False},
            "tracing": {"enabled": False},
            "processing_time": {"include_components": False},
        }
    )
    assert "gpu_resources" not in off and "trace_id" not in off
    assert "components" not in off["processing_time"]
    no_temp = build(components={"gpu_resources": {"include_temperature": False}})
    assert "temperature_c" not in no_temp["gpu_resources"]


def test_sampling_and_switches():
    assert not MetaBuilder(ApiMetadataSection(enabled=False)).wanted()
    assert not MetaBuilder(ApiMetadataSection(include_in_response=False)).wanted()
    assert MetaBuilder(ApiMetadataSection()).wanted()
    half = MetaBuilder(ApiMetadataSection(sampling_rate=0.5), random.Random(1))
    n = sum(half.wanted() for _ in range(2000))
    assert 850 < n < 1150


def test_envelope_shape():
    assert envelope({"x": 1}) == {
        "status": "success",
        "data": {"x": 1},
        "error": None,
        "meta": None,
    }
    err = error_body("bad", "no", details=[{"field": "f", "reason": "r"}], retry_after=None)
    assert envelope(None, error=err)["status"] == "error"
    assert err == {"code": "bad", "message": "no", "details": [{"field": "f", "reason": "r"}]}
