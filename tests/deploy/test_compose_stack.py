"""The container image and the test stack (deploy/docker-compose.test.yml), for real.

Builds the router image and the Prometheus image on a Debian base made from Debian
packages (deploy/build-base-image.sh; no registry is reachable), starts the router, two
CPU workers and Prometheus, routes requests through the router's published port on
127.0.0.1, checks through Prometheus's HTTP API that it scraped the router and loaded the
rules, and tears everything down. Skipped, saying why, without Docker. Cold (no base
image, no layer cache) about 5 minutes on the 2-core VM; warm about 1 minute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from tests.e2e.procs import free_port

from .conftest import DEPLOY, ROOT

pytestmark = pytest.mark.docker

BASE = os.environ.get("GPU_ROUTER_BASE_IMAGE", "gpu-router-base:bookworm")
ROUTER_IMAGE = "gpu-request-router:test"
PROM_IMAGE = "gpu-router-prometheus:test"
SERVICE_KEY = "test-orchestrator-key-0123456789"  # deploy/config.test.yaml
ADMIN_KEY = "test-admin-key-0123456789abcdef"
COMPOSE_FILE = DEPLOY / "docker-compose.test.yml"


def _ok(*cmd: str, timeout: float = 30) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _compose() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and _ok("docker", "compose", "version"):
        return ["docker", "compose"]
    return None


def _why_not() -> str | None:
    if shutil.which("docker") is None:
        return "docker missing: scripts/install-system-deps.sh (as root) installs docker.io"
    if _compose() is None:
        return "docker-compose missing: scripts/install-system-deps.sh installs it"
    if not _ok("docker", "info"):
        return "no Docker daemon: scripts/install-system-deps.sh (as root) starts one"
    if not _ok("docker", "image", "inspect", BASE):
        if shutil.which("debootstrap") is None:
            return f"no base image {BASE} and no debootstrap to build it"
        if os.geteuid() != 0:
            return f"no base image {BASE}, and building it with debootstrap needs root"
    return None


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    t0 = time.monotonic()
    p = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    took = time.monotonic() - t0
    print(f"{' '.join(cmd[:4])} ...: {took:.1f} s")
    assert p.returncode == 0, (
        f"{cmd} exited {p.returncode}:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    )
    return p.stdout


@pytest.fixture(scope="module")
def images() -> None:
    why = _why_not()
    if why:
        pytest.skip(why)
    run(["bash", str(DEPLOY / "build-base-image.sh"), BASE], timeout=1200)
    common = ["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE}"]
    run([*common, "-f", "deploy/Dockerfile", "-t", ROUTER_IMAGE, "."], timeout=1500)
    run(
        [*common, "-f", "deploy/prometheus/Dockerfile", "-t", PROM_IMAGE, "deploy/prometheus"],
        timeout=900,
    )


@pytest.fixture(scope="module")
def stack(images):
    compose = _compose()
    assert compose is not None
    project = f"grtest{uuid.uuid4().hex[:8]}"
    router_port, prom_port = free_port(), free_port()
    env = {**os.environ, "ROUTER_PORT": str(router_port), "PROMETHEUS_PORT": str(prom_port)}
    base = [*compose, "-p", project, "-f", str(COMPOSE_FILE)]
    try:
        run([*base, "up", "-d", "--no-build"], timeout=300, env=env)
        yield {
            "router": f"http://127.0.0.1:{router_port}",
            "prometheus": f"http://127.0.0.1:{prom_port}",
            "base": base,
            "env": env,
        }
    finally:
        logs = subprocess.run(
            [*base, "logs", "--no-color", "--tail", "40"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        print(logs.stdout[-8000:])
        subprocess.run(
            [*base, "down", "-v", "--remove-orphans", "-t", "10"],
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def wait_for(what: str, fn, timeout: float):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def container(stack, service: str) -> str:
    out = run([*stack["base"], "ps", "-q", service], timeout=60, env=stack["env"])
    return out.strip()


def test_requests_through_the_stack_and_prometheus_scrapes_the_router(stack):
    t0 = time.monotonic()
    url, prom = stack["router"], stack["prometheus"]
    wait_for("router /health 200", lambda: httpx.get(f"{url}/health").status_code == 200, 120)
    service = {"authorization": f"Bearer {SERVICE_KEY}"}
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    n = 20
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.post("/api/v1/route", json={}).status_code == 401  # keys are required
        for i in range(n):
            body = {
                "request_id": f"stack-{i}",
                "user_id": f"user-{i % 4}",
                "model_id": "m",
                "priority": 1 + i % 5,
                "type": "inference",
                "payload": {"iterations": 2},
                "resource_requirements": {"memory": 512, "expected_duration": 20},
            }
            r = c.post("/api/v1/route", json=body, headers=service)
            assert r.status_code == 200, r.text

        def all_done():
            got = [
                c.get(f"/api/v1/requests/stack-{i}", headers=admin).json()["data"] for i in range(n)
            ]
            return got if all(d["status"] in ("completed", "failed") for d in got) else None

        done = wait_for("all requests finished", all_done, 120)
        assert {d["status"] for d in done} == {"completed"}
        assert {d["assigned_gpu"] for d in done} == {"gpu-0", "gpu-1"}  # both workers
        result = c.get("/api/v1/requests/stack-0/result", headers=service).json()["data"]
        assert result["result"]["device"] == "cpu"  # a CPU reference worker ran it

    def query(q: str) -> list[dict]:
        r = httpx.get(f"{prom}/api/v1/query", params={"query": q}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    up = wait_for("Prometheus scraped the router", lambda: query('up{job="gpu-router"} == 1'), 90)
    assert up[0]["metric"]["instance"] == "router:8000"
    finished = 'sum(gpu_router_requests_finished_total{job="gpu-router",status="completed"})'
    wait_for(
        f"Prometheus sees {n} completed requests",
        lambda: (r := query(finished)) and float(r[0]["value"][1]) == n,
        60,
    )
    gpus = query('sum(gpu_router_gpu_state{job="gpu-router",state="active"})')
    assert float(gpus[0]["value"][1]) == 2
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
    by_name = {g["name"]: g for g in groups}
    assert {"gpu_router_recording", "gpu_router_alerts"} <= set(by_name)
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    print(f"stack checks: {time.monotonic() - t0:.1f} s")


def test_the_router_container(stack):
    cid = container(stack, "router")
    assert run(["docker", "exec", cid, "id", "-u"], 30).strip() == "10001"  # not root
    files = run(["docker", "exec", cid, "ls", "/var/lib/gpu-router"], 30).split()
    assert "journal.sqlite3" in files  # the journal is on the volume
    health = wait_for(
        "HEALTHCHECK healthy",
        lambda: (
            run(["docker", "inspect", "-f", "{{.State.Health.Status}}", cid], 30).strip()
            == "healthy"
        ),
        90,
    )
    assert health
