"""Log and metric shipping (integration plan 2.3) against a real receiver process on
loopback: the router (``gpu-router serve``) ships its log records to ``{logging_url}/logs``
and metric snapshots to ``{metrics_url}/metrics``; with the receiver gone it keeps
answering at once and counts what it drops."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_router.shim.store import client_id
from tests.e2e.procs import ALICE, hdr, router_config, start_router, wait_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

RECEIVER = Path(__file__).with_name("receiver.py")
SHIPPING = {
    "flush_interval_s": 0.05,
    "batch": 50,
    "buffer": 20,
    "retries": 1,
    "backoff_s": 0.05,
    "timeout_s": 0.5,
}


def received(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def counter(text: str, name: str, kind: str) -> float:
    m = re.search(rf'^{name}{{kind="{kind}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else float("nan")


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def submit(c: httpx.Client, rid: str) -> float:
    """Submit one request; the seconds its 200 took."""
    body = {
        "request_id": rid,
        "user_id": "alice",
        "model_id": "llama",
        "priority": 3,
        "payload": {"simulate": {"duration_ms": 10}},
        "resource_requirements": {"memory": 500, "compute_units": 1, "expected_duration": 10},
    }
    t0 = time.perf_counter()
    r = c.post("/api/v1/route", json=body, headers=hdr(ALICE))
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


def test_logs_and_metrics_reach_the_receiver_and_drops_are_counted_when_it_is_down(
    tmp_path: Path,
) -> None:
    out = tmp_path / "received.jsonl"
    receiver = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{int(receiver.stdout.readline())}"
        cfg = router_config(
            tmp_path,
            None,
            logging={"level": "DEBUG", "url": url, "shipping": SHIPPING},
            metrics={"url": url, "interval_s": 0.2, "shipping": SHIPPING},
        )
        router, base = start_router(tmp_path, cfg)
        try:
            with httpx.Client(base_url=base, timeout=10.0) as c:
                rids = [f"ship-{i}" for i in range(5)]
                for rid in rids:
                    submit(c, rid)
                assert {d["status"] for d in wait_terminal(c, rids, hdr(ALICE)).values()} == {
                    "completed"
                }

                def shipped_ids() -> set[str]:
                    logs = [r for x in received(out) if x["path"] == "/logs" for r in x["body"]]
                    # (the router logs the store key, request_id/user_id)
                    return {client_id(r["request_id"]) for r in logs if "request_id" in r}

                assert wait_for(lambda: set(rids) <= shipped_ids())
                for x in received(out):
                    if x["path"] == "/logs":
                        assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in x["body"])

                def accepted_in_last_snapshot() -> float:
                    snaps = [s for x in received(out) if x["path"] == "/metrics" for s in x["body"]]
                    if not snaps:
                        return 0.0
                    last = snaps[-1]
                    assert last["source"] == "gpu-request-router"
                    return sum(
                        m["value"]
                        for m in last["metrics"]
                        if m["name"] == "gpu_router_submissions_total"
                    )

                assert wait_for(lambda: accepted_in_last_snapshot() == 5)
                text = c.get("/metrics").text
                assert counter(text, "gpu_router_shipping_sent_total", "metrics") >= 1
                assert counter(text, "gpu_router_shipping_sent_total", "logs") >= 5
                assert counter(text, "gpu_router_shipping_dropped_total", "metrics") == 0
                assert counter(text, "gpu_router_shipping_dropped_total", "logs") == 0

                def dropped() -> tuple[float, float]:
                    text = c.get("/metrics").text
                    name = "gpu_router_shipping_dropped_total"
                    return counter(text, name, "logs"), counter(text, name, "metrics")

                # a receiver that takes connections and never answers: every POST waits
                # out timeout_s, the buffers (20 items) fill, the rest is dropped
                assert httpx.post(f"{url}/hang", content=b"{}").status_code == 200
                hung = [f"hung-{i}" for i in range(40)]
                slowest = max(submit(c, rid) for rid in hung)
                assert slowest < 1.0  # nothing waits for the receiver
                wait_terminal(c, hung, hdr(ALICE))
                assert wait_for(lambda: min(dropped()) > 0)

                receiver.kill()  # and one that is gone: connections refused
                receiver.wait(10)
                before = dropped()
                gone = [f"gone-{i}" for i in range(30)]
                slowest = max(submit(c, rid) for rid in gone)
                assert slowest < 1.0
                wait_terminal(c, gone, hdr(ALICE))
                assert wait_for(lambda: all(a > b for a, b in zip(dropped(), before, strict=True)))
                assert c.get("/health").status_code == 200
        finally:
            router.stop()
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait(10)
        if receiver.stdout is not None:
            receiver.stdout.close()
