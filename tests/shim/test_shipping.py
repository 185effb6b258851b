"""The shipper against a real receiver process on loopback: batches, retries after 503s,
and a bounded buffer that drops (and counts) what a dead receiver cannot take."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_router.shim.config import ShippingOptions
from gpu_router.shim.shipping import Shipper
from tests.e2e.procs import free_port

pytestmark = pytest.mark.timeout(30)
RECEIVER = Path(__file__).parents[1] / "e2e" / "receiver.py"


@pytest.fixture
def receiver(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    out = tmp_path / "received.jsonl"
    fail_first = str(getattr(request, "param", 0))
    p = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(out), fail_first], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None
        yield f"http://127.0.0.1:{int(p.stdout.readline())}/logs", out
    finally:
        p.kill()
        p.wait(10)
        if p.stdout is not None:
            p.stdout.close()


def bodies(out: Path) -> list[list[dict]]:
    return [json.loads(line)["body"] for line in out.read_text().splitlines()]


def test_items_arrive_in_batches_in_order(receiver: tuple[str, Path]) -> None:
    url, out = receiver
    s = Shipper(url, "logs", ShippingOptions(batch=4, flush_interval_s=0.2))
    for i in range(10):
        assert s.put(json.dumps({"n": i}))
    assert s.drain(10.0)
    s.close()
    batches = bodies(out)
    assert [r["n"] for b in batches for r in b] == list(range(10))
    assert all(len(b) <= 4 for b in batches)
    assert (s.sent, s.dropped, s.failed_posts) == (10, 0, 0)


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_503s_are_retried_with_backoff(receiver: tuple[str, Path]) -> None:
    url, out = receiver
    s = Shipper(
        url, "logs", ShippingOptions(batch=10, retries=3, backoff_s=0.1, flush_interval_s=0.05)
    )
    t0 = time.monotonic()
    for i in range(3):
        s.put(json.dumps({"n": i}))
    assert s.drain(10.0)
    took = time.monotonic() - t0
    s.close()
    assert (s.sent, s.dropped, s.failed_posts) == (3, 0, 2)
    assert took >= 0.1 + 0.2  # the two waits: backoff_s, then twice it
    assert [r["n"] for b in bodies(out) for r in b] == [0, 1, 2]


@pytest.mark.parametrize("receiver", [100], indirect=True)
def test_a_batch_whose_tries_all_fail_is_dropped(receiver: tuple[str, Path]) -> None:
    url, _out = receiver
    s = Shipper(
        url, "logs", ShippingOptions(batch=10, retries=1, backoff_s=0.01, flush_interval_s=0.05)
    )
    for i in range(5):
        s.put(json.dumps({"n": i}))
    assert s.drain(10.0)
    s.close()
    assert (s.sent, s.dropped, s.failed_posts) == (0, 5, 2)


def test_a_dead_receiver_never_blocks_put_and_the_full_buffer_drops() -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    s = Shipper(url, "metrics", ShippingOptions(buffer=5, batch=1, retries=5, backoff_s=5.0))
    t0 = time.perf_counter()
    accepted = [s.put(json.dumps({"n": i})) for i in range(100)]
    assert time.perf_counter() - t0 < 0.5
    # the thread holds at most one batch (1 item) while retrying; 5 more fit the buffer
    assert 94 <= accepted.count(False) <= 95
    assert s.dropped == accepted.count(False)
    t0 = time.perf_counter()
    s.close(timeout_s=5.0)  # no backoff waits once closing: the rest is tried once each
    assert time.perf_counter() - t0 < 5.0
    assert s.sent == 0 and s.dropped == 100
