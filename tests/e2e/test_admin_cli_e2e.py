"""`gpu-router admin` end to end against a real `gpu-router serve --virtual-gpus 2`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from gpu_router.cli import main
from gpu_router.client import RouterClient

from .client_server import start_virtual_router
from .procs import ADMIN, KEYS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    proc, url = start_virtual_router(tmp_path_factory.mktemp("admin-cli"), gpus=2)
    yield url
    proc.stop()


def admin(capsys, url, *argv, key=ADMIN):
    rc = main(["admin", "--url", url, "--key", key, *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_gpus_human_and_json(router, capsys):
    rc, out, _ = admin(capsys, router, "gpus")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["GPU", "STATUS", "HEALTH"]
    assert [ln.split()[0] for ln in lines[1:]] == ["gpu-0", "gpu-1"]
    rc, out, _ = admin(capsys, router, "gpus", "--json")
    assert rc == 0 and [g["gpu_id"] for g in json.loads(out)["gpus"]] == ["gpu-0", "gpu-1"]


def test_maintenance_then_restart(router, capsys):
    rc, out, _ = admin(capsys, router, "maintenance", "gpu-1", "--reason", "fan", "--minutes", "5")
    assert rc == 0 and out.strip() == "gpu-1: maintenance (no new work; running requests finish)"
    _, out, _ = admin(capsys, router, "--json", "gpus")
    assert {g["gpu_id"]: g["status"] for g in json.loads(out)["gpus"]}["gpu-1"] == "maintenance"
    rc, out, _ = admin(capsys, router, "restart", "gpu-1", "--force", "--json")
    assert rc == 0 and json.loads(out)["action"] == "restart"


def test_restart_busy_gpu_without_force_fails_with_the_api_message(router, capsys):
    with RouterClient(router, KEYS["alice"]) as c:
        ack = c.route(
            "alice",
            "m",
            1,
            request_id="cli-busy",
            resource_requirements={"expected_duration": 60_000},
        )
        deadline = time.monotonic() + 10
        while (st := c.status(ack.request_id)).status != "processing":
            assert time.monotonic() < deadline, st
            time.sleep(0.02)
        gpu = st.assigned_gpu
        assert gpu is not None
    rc, out, err = admin(capsys, router, "restart", gpu)
    assert rc == 1 and out == ""
    assert err.startswith("gpu-router admin: HTTP 409 busy: ") and "force" in err
    rc, out, _ = admin(capsys, router, "cancel", "cli-busy", "--reason", "test")
    assert rc == 0 and out.strip() == "cli-busy: cancelled (cancelled)"
    rc, out, _ = admin(capsys, router, "cancel", "cli-busy", "--user", "alice", "--json")
    assert rc == 0 and json.loads(out)["cancelled"] is False
    rc, _, err = admin(capsys, router, "cancel", "cli-busy", "--user", "bob")  # ids are per user
    assert rc == 1 and "404" in err


def test_quota_show_and_set(router, capsys):
    rc, out, _ = admin(capsys, router, "quota", "bob")
    assert rc == 0 and out.startswith("user bob\n") and "requests_per_minute: limit" in out
    rc, out, _ = admin(
        capsys,
        router,
        "quota",
        "bob",
        "--requests-per-minute",
        "321",
        "--requests-per-day",
        "4321",
        "--json",
    )
    assert rc == 0
    limits = json.loads(out)["rate_limits"]
    assert limits["requests_per_minute"]["limit"] == 321
    assert limits["requests_per_day"]["limit"] == 4321


def test_errors_exit_non_zero(router, capsys):
    rc, out, err = admin(capsys, router, "maintenance", "gpu-9")
    assert rc == 1 and err.strip() == "gpu-router admin: HTTP 404 not_found: GPU gpu-9 not found"
    rc, out, err = admin(capsys, router, "gpus", key="wrong-key-0123456789")
    assert rc == 1 and "HTTP 401 unauthorized: invalid API key" in err
    rc, out, err = admin(
        capsys, router, "--json", "quota", "bob", "--requests-per-day", "1", key=KEYS["alice"]
    )
    assert rc == 1 and json.loads(out)["error"]["status"] == 403
    rc, out, err = admin(capsys, "http://127.0.0.1:9", "gpus")
    assert rc == 1 and "no answer" in err


def test_subprocess_with_key_from_environment(router):
    env = {**os.environ, "GPU_ROUTER_KEY": ADMIN}
    cmd = [sys.executable, "-m", "gpu_router.cli", "admin", "--url", router]
    p = subprocess.run(
        [*cmd, "gpus", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["gpus"]) == 2
    env.pop("GPU_ROUTER_KEY")
    p = subprocess.run([*cmd, "gpus"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "HTTP 401 unauthorized" in p.stderr
