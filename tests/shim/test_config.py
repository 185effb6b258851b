"""Config: the guide's keys, env overrides, refusal naming key and reason."""

from __future__ import annotations

import pytest

from gpu_router.shim.config import ConfigError, config_from_mapping, load_config

GUIDE_YAML = """
api:
  host: "0.0.0.0"
  port: 8000
  debug: false
gpu_monitoring:
  url: "http://gpu-monitoring-service:8080"
  update_interval: 5
  health_check_interval: 60
  max_temperature: 85.0
load_balancer:
  strategy: "hybrid"
  weights:
    usage: 0.4
    priority: 0.3
    performance: 0.2
    health: 0.1
request_router:
  max_retries: 3
  retry_delay: 1.0
  request_timeout: 30.0
error_handler:
  max_retries: 3
  retry_delay: 1.0
  error_threshold: 0.1
  gpu_cooldown_period: 300
user_quota_manager:
  default_gpu_limit: 2
  default_request_limit: 100
  default_priority_limit: 3
  quota_check_interval: 60
api_metadata:
  enabled: true
  include_in_response: true
  detail_level: "full"
  sampling_rate: 1.0
  components:
    processing_time:
      enabled: true
      include_components: true
    gpu_resources:
      enabled: true
      include_temperature: true
      include_utilization: true
    tracing:
      enabled: true
      propagate_headers: true
"""


def test_deployment_guide_example_loads(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_text(GUIDE_YAML)
    cfg = load_config(f, env={})
    assert cfg.api.host == "0.0.0.0" and cfg.api.port == 8000
    assert cfg.load_balancer.strategy == "hybrid"
    assert cfg.load_balancer.weights == {
        "usage": 0.4,
        "priority": 0.3,
        "performance": 0.2,
        "health": 0.1,
    }
    assert cfg.user_quota_manager.default_request_limit == 100
    assert cfg.api_metadata.detail_level == "full"


def test_env_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(GUIDE_YAML)
    env = {
        "CONFIG_PATH": str(f),
        "API_HOST": "127.0.0.1",
        "API_PORT": "9001",
        "API_DEBUG": "true",
        "GPU_MONITORING_URL": "http://mon:1",
        "LOGGING_URL": "http://log:2",
    }
    cfg = load_config(None, env=env)
    assert (cfg.api.host, cfg.api.port, cfg.api.debug) == ("127.0.0.1", 9001, True)
    assert cfg.gpu_monitoring.url == "http://mon:1"
    assert cfg.logging.url == "http://log:2"


def test_defaults_without_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    assert cfg.api.port == 8000 and cfg.gpu_monitoring.source == "virtual"


@pytest.mark.parametrize(
    ("raw", "env", "key", "words"),
    [
        ({"api": {"port": 70000}}, {}, "api.port", "less than or equal"),
        ({}, {"API_PORT": "eighty"}, "api.port", "integer"),
        ({}, {"API_DEBUG": "perhaps"}, "api.debug", "boolean"),
        ({"api": {"hots": "x"}}, {}, "api.hots", "unknown key"),
        ({"colour": 1}, {}, "colour", "unknown key"),
        ({"api_metadata": {"sampling_rate": 2}}, {}, "api_metadata.sampling_rate", "1"),
        ({"api_metadata": {"detail_level": "max"}}, {}, "api_metadata.detail_level", "minimal"),
        ({"load_balancer": {"weights": {"speed": 1}}}, {}, "load_balancer.weights", "speed"),
        ({"auth": {"keys": [{"key": "short", "user_id": "u"}]}}, {}, "auth.keys.0.key", "16"),
        (
            {"auth": {"trusted_networks": [{"cidr": "10.0.0.0/33"}]}},
            {},
            "auth.trusted_networks.0.cidr",
            "10.0.0.0/33",
        ),
        ({"queue": {"max_wait_s": {7: 1}}}, {}, "queue.max_wait_s", "priority 7"),
        ({"api": []}, {}, "api", "valid"),
        ({"api": {"forwarded_allow_ips": ["proxy"]}}, {}, "api.forwarded_allow_ips", "proxy"),
        ({"journal": {"writer": "threads"}}, {}, "journal.writer", "'loop' or 'thread'"),
    ],
)
def test_invalid_config_names_key_and_reason(raw, env, key, words):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(raw, env)
    assert info.value.key == key
    assert words in info.value.reason
    assert key in str(info.value)


def test_missing_explicit_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="CONFIG_PATH"):
        load_config(None, env={"CONFIG_PATH": str(tmp_path / "nope.yaml")})


def test_bad_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("api: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(f, env={})
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f, env={})
