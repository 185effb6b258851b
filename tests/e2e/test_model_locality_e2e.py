"""Model locality end to end: the router and two reference workers (CPU mode) as real
processes on loopback; a worker loads a model with a calibrated delay, keeps it, and
the router sends the next request for it to that worker."""

from __future__ import annotations

import time

import httpx
import pytest

from .procs import KEYS, free_port, hdr, router_config, start_router, start_worker, wait_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def job(rid: str, model: str) -> dict:
    """A short CPU job of alice's for ``model`` (512 MB, 10 ms declared)."""
    return {
        "request_id": rid,
        "user_id": "alice",
        "model_id": model,
        "priority": 3,
        "type": "inference",
        "payload": {"iterations": 1, "matrix_size": 16},
        "resource_requirements": {"memory": 512, "expected_duration": 10},
    }


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
                body = job(rid, model)
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


def _gpu_models(c: httpx.Client) -> list[str]:
    gpus = c.get("/api/v1/gpus", headers=hdr(KEYS["alice"])).json()["data"]["gpus"]
    return gpus[0]["resident_models"]


def _locality(c: httpx.Client) -> dict:
    return c.get("/api/v1/metrics", headers=hdr(KEYS["alice"])).json()["data"]["locality"]


def _until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_worker_restarted_empty_makes_the_next_request_cold(tmp_path) -> None:
    """The router reads the worker's ``/health`` models: after the worker process is
    killed and started again (holding nothing), the router forgets the model and counts
    the next request for it as a cold start (which the worker pays)."""
    port = free_port()
    load = ["--model-load-s", "0.5"]
    worker = start_worker(0, port, tmp_path, extra=load)
    cfg = router_config(
        tmp_path,
        [port],
        model_locality={
            "enabled": True,
            "default_load_s": 0.5,
            "report_interval": 0.1,
            "report_grace_s": 0.3,
        },
        load_balancer={"strategy": "warm-first"},
    )
    router, url = start_router(tmp_path, cfg)
    try:
        with httpx.Client(base_url=url, timeout=10.0) as c:
            done = {}

            def run(rid: str) -> None:
                body = job(rid, "sd")
                r = c.post("/api/v1/route", json=body, headers=hdr(KEYS["alice"]))
                assert r.status_code == 200, r.text
                done.update(wait_terminal(c, [rid], hdr(KEYS["alice"])))

            run("r1")
            run("r2")
            assert _locality(c)["cold_starts"] == 1 and _locality(c)["warm_starts"] == 1
            time.sleep(0.5)  # reports after the load (past the grace) keep it: it is held
            assert _gpu_models(c) == ["sd"]
            worker.kill()
            worker = start_worker(0, port, tmp_path, extra=load)
            assert httpx.get(f"http://127.0.0.1:{port}/health").json()["models"] == []
            _until(lambda: _gpu_models(c) == [])  # the next report empties the cache
            run("r3")
            loc = _locality(c)
            assert (loc["cold_starts"], loc["warm_starts"]) == (2, 1)
            assert loc["memory_used_mb"] == 6500.0  # the default weights, once
            assert _gpu_models(c) == ["sd"]
    finally:
        router.stop()
        worker.stop()
    assert [done[r]["status"] for r in ("r1", "r2", "r3")] == ["completed"] * 3
    assert done["r1"]["duration"] >= 500 and done["r3"]["duration"] >= 500  # both loaded
    assert done["r2"]["duration"] < 500
