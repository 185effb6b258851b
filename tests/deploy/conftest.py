"""Fixtures of the deployment tests: what a live router exports on /metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.procs import ALICE, hdr, router_config, start_router, wait_terminal

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


@dataclass
class Exported:
    """Sample names on /metrics -> their label names (None: the family had no sample, so
    its labels are unknown), and the label values seen."""

    labels: dict[str, set[str] | None] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)


def parse_metrics(text: str) -> Exported:
    out = Exported()
    for fam in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(fam.type, ("",)):
            out.labels.setdefault(fam.name + suffix, None)
        for s in fam.samples:
            names = out.labels.get(s.name) or set()
            names |= set(s.labels) - {"le", "quantile"} | ({"le"} if "le" in s.labels else set())
            out.labels[s.name] = names
            for k, v in s.labels.items():
                out.values.setdefault(k, set()).add(v)
    return out


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    """Start ``gpu-router serve`` (two virtual GPUs) on loopback, route a few requests
    through it, and read its /metrics."""
    tmp = tmp_path_factory.mktemp("metrics-router")
    proc, url = start_router(tmp, router_config(tmp, None))
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            rids = []
            for i in range(4):
                body = {
                    "request_id": f"metrics-{i}",
                    "user_id": "alice",
                    "model_id": "m",
                    "priority": 1 + i,
                    "type": "inference",
                    "payload": {},
                    "resource_requirements": {"memory": 512, "expected_duration": 5},
                }
                r = c.post("/api/v1/route", json=body, headers=hdr(ALICE))
                assert r.status_code == 200, r.text
                rids.append(body["request_id"])
            wait_terminal(c, rids, hdr(ALICE))
            assert c.get("/health").status_code == 200
            # The GPU gauges appear with the first GPU sample (every 0.1 s here).
            deadline = time.monotonic() + 10
            while True:
                r = c.get("/metrics")
                assert r.status_code == 200
                got = parse_metrics(r.text)
                if len(got.values.get("gpu_id", ())) == 2 or time.monotonic() > deadline:
                    return got
                time.sleep(0.1)
    finally:
        proc.stop()
