"""The issue-14 config sections refuse bad values naming the key: connections,
worker_auth, callbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_router.shim.config import (
    ConfigError,
    config_from_mapping,
    read_token_file,
    worker_tokens,
)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"connections": {"max_header_bytes": 10}}, "connections.max_header_bytes"),
        ({"connections": {"idle_timeout_s": 0}}, "connections.idle_timeout_s"),
        (
            {"connections": {"max_connections": 10, "max_connections_per_client": 20}},
            "connections",
        ),
        ({"worker_auth": {"token": "short"}}, "worker_auth.token"),
        ({"worker_auth": {"tokens": {"gpu-0": "has a space 0123456789"}}}, "worker_auth.tokens"),
        ({"worker_auth": {"token": "t" * 20, "token_file": "/x"}}, "worker_auth"),
        ({"callbacks": {"allowed_networks": ["not-a-net"]}}, "callbacks.allowed_networks"),
        ({"callbacks": {"allowed_hosts": ["bad host"]}}, "callbacks.allowed_hosts"),
        ({"callbacks": {"allowed_schemes": ["ftp"]}}, "callbacks.allowed_schemes"),
        ({"callbacks": {"signing_secret": "short"}}, "callbacks.signing_secret"),
    ],
)
def test_bad_values_name_their_key(raw, key):
    with pytest.raises(ConfigError) as err:
        config_from_mapping(raw)
    assert err.value.key.startswith(key), (err.value.key, key)


def test_token_files_are_read_and_checked(tmp_path: Path):
    good = tmp_path / "token"
    good.write_text("a-token-of-twenty-chars\nignored second line\n")
    cfg = config_from_mapping({"worker_auth": {"token_file": str(good), "tokens": {}}})
    assert worker_tokens(cfg.worker_auth) == {"": "a-token-of-twenty-chars"}
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    with pytest.raises(ConfigError, match="16 printable"):
        read_token_file(weak)
    with pytest.raises(ConfigError, match="cannot read"):
        read_token_file(tmp_path / "missing")
