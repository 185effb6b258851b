"""The deployment's configuration files: the router's configs pass its own validation
and the compose files are valid compose files naming what the guide names."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from gpu_router.shim.config import load_config

from .conftest import DEPLOY


@pytest.mark.parametrize("name", ["config.test.yaml", "config.prod.example.yaml"])
def test_router_configs_validate(name):
    cfg = load_config(DEPLOY / name, env={})
    assert cfg.api.host == "0.0.0.0" and cfg.api.port == 8000
    assert cfg.journal.path == "/var/lib/gpu-router/journal.sqlite3"  # on the volume
    assert set(cfg.gpu_monitoring.worker_urls) == {"gpu-0", "gpu-1"}


def test_test_config_has_the_keys_the_stack_test_uses():
    from .test_compose_stack import ADMIN_KEY, SERVICE_KEY

    keys = {k.key: k.role for k in load_config(DEPLOY / "config.test.yaml", env={}).auth.keys}
    assert keys == {SERVICE_KEY: "service", ADMIN_KEY: "admin"}


def test_compose_services():
    test = yaml.safe_load((DEPLOY / "docker-compose.test.yml").read_text())["services"]
    prod = yaml.safe_load((DEPLOY / "docker-compose.prod.yml").read_text())["services"]
    assert set(test) == {"router", "worker-0", "worker-1", "prometheus"}
    assert set(prod) == {"router", "worker-0", "worker-1", "prometheus", "grafana"}
    for name in ("worker-0", "worker-1"):
        assert test[name]["command"][0] == "worker" and "cpu" in test[name]["command"]
        assert prod[name]["runtime"] == "nvidia" and "cuda" in prod[name]["command"]
    assert {
        prod["worker-0"]["environment"]["NVIDIA_VISIBLE_DEVICES"],
        prod["worker-1"]["environment"]["NVIDIA_VISIBLE_DEVICES"],
    } == {"0", "1"}
    for stack in (test, prod):
        assert stack["router"]["command"][0] == "serve"
        assert any(v.endswith(":/var/lib/gpu-router") for v in stack["router"]["volumes"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose missing")
@pytest.mark.parametrize("name", ["docker-compose.test.yml", "docker-compose.prod.yml"])
def test_compose_files_parse(name):
    p = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / name), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
