"""Model locality end to end: the router and two reference workers (CPU mode) as real
processes on loopback; a worker loads a model with a calibrated delay, keeps it, and
the router sends the next request for it to that worker."""

from __future__ import annotations

import httpx
import pytest

from .procs import KEYS, free_port, hdr, router_config, start_router, start_worker, wait_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_the_second_request_for_a_model_runs_warm(tmp_path) -> None:
    ports = [free_port() for _ in range(2)]
    load = ["--model-load-s", "0.5"]
    workers = [start_worker(i, p, tmp_path, extra=load) for i, p in enumerate(ports)]
    cfg = router_config(
        tmp_path,
        ports,
        model_locality={"enabled": True, "default_load_s": 0.5},
        load_balancer={"strategy": "warm-first"},
    )
    router, url = start_router(tmp_path, cfg)
    try:
        with httpx.Client(base_url=url, timeout=10.0) as c:
            done = {}
            for rid, model in (("m1", "other"), ("m2", "sd"), ("m3", "sd")):
                body = {
                    "request_id": rid,
                    "user_id": "alice",
                    "model_id": model,
                    "priority": 3,
                    "type": "inference",
                    "payload": {"iterations": 1, "matrix_size": 16},
                    "resource_requirements": {"memory": 512, "expected_duration": 10},
                }
                r = c.post("/api/v1/route", json=body, headers=hdr(KEYS["alice"]))
                assert r.status_code == 200, r.text
                if rid == "m1":
                    continue  # m1 and m2 run at once, on the two GPUs
                done |= wait_terminal(c, ["m1", rid], hdr(KEYS["alice"]))
        held = [httpx.get(f"http://127.0.0.1:{p}/health").json()["models"] for p in ports]
    finally:
        router.stop()
        for w in workers:
            w.stop()
    gpus = {rid: d["assigned_gpu"] for rid, d in done.items()}
    assert gpus["m1"] != gpus["m2"] and gpus["m3"] == gpus["m2"]
    assert sorted(held) == [["other"], ["sd"]]
    assert done["m2"]["duration"] >= 500  # paid the load
    assert done["m3"]["duration"] < 500  # found it resident
