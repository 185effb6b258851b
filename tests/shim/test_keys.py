"""`gpu-router keys create` and auth.keys_file: strong keys, digests only, mode 0600,
loaded with the inline keys."""

from __future__ import annotations

import logging
import stat

import pytest
import yaml

from gpu_router.cli import main
from gpu_router.shim.config import AuthSection, ConfigError, config_from_mapping
from gpu_router.shim.http.auth import Authenticator, AuthError
from gpu_router.shim.keys import all_keys, create_key, load_keys_file


def test_create_appends_digests_with_mode_0600(tmp_path):
    path = tmp_path / "keys.yaml"
    k1 = create_key(path, "alice")
    k2 = create_key(path, "ops", "admin")
    assert k1 != k2 and len(k1) >= 40 and k1.startswith("grk_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert k1 not in text and k2 not in text
    entries = yaml.safe_load(text)["keys"]
    assert [(e["user_id"], e["role"]) for e in entries] == [("alice", "user"), ("ops", "admin")]
    assert [k.user_id for k in load_keys_file(path)] == ["alice", "ops"]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_keys_file_is_loaded_with_inline_keys(tmp_path):
    path = tmp_path / "keys.yaml"
    key = create_key(path, "bob", "service")
    cfg = config_from_mapping(
        {
            "auth": {
                "keys": [{"key": "inline-key-0123456789", "user_id": "carol"}],
                "keys_file": str(path),
            }
        }
    )
    assert [k.user_id for k in all_keys(cfg.auth)] == ["carol", "bob"]
    authn = Authenticator(cfg.auth)
    who = authn.authenticate(f"Bearer {key}", None)
    assert (who.user_id, who.role.value) == ("bob", "service")
    assert authn.authenticate("Bearer inline-key-0123456789", None).user_id == "carol"
    with pytest.raises(AuthError):
        authn.authenticate("Bearer " + key[:-1] + "x", None)


def test_bad_keys_files_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_keys_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_keys_file(bad)
    bad.write_text("keys:\n  - {user_id: alice}\n")
    with pytest.raises(ConfigError, match="exactly one of key or key_sha256"):
        load_keys_file(bad)
    with pytest.raises(ConfigError, match="user_id"):
        create_key(tmp_path / "k.yaml", "not a valid id!")
    assert AuthSection().keys_file is None


def test_cli_prints_the_key_once_and_logs_nothing(tmp_path, capsys, caplog):
    path = tmp_path / "keys.yaml"
    with caplog.at_level(logging.DEBUG):
        assert main(["keys", "create", "--user", "alice", "--file", str(path)]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert out.out == key + "\n" and len(key) >= 40
    assert key not in out.err and "only time the key is shown" in out.err
    assert key not in caplog.text
    assert load_keys_file(path)[0].user_id == "alice"


def test_cli_default_file_comes_from_the_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    (tmp_path / "config.yaml").write_text("auth: {keys_file: from-config.yaml}\n")
    assert main(["keys", "create", "--user", "dave", "--role", "admin"]) == 0
    assert load_keys_file(tmp_path / "from-config.yaml")[0].role == "admin"
    assert main(["keys", "create", "--user", "bad id"]) == 2
    assert "gpu-router keys: invalid configuration" in capsys.readouterr().err


def test_serve_refuses_a_missing_keys_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONFIG_PATH", raising=False)
    rc = main(["serve", "--virtual-gpus", "1", "--keys-file", str(tmp_path / "nope.yaml")])
    assert rc == 2
    assert "auth.keys_file: file not found" in capsys.readouterr().err


def test_concurrent_creates_keep_every_key(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "keys.yaml"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda i: create_key(path, f"user-{i}"), range(16)))
    assert len(set(keys)) == 16
    assert sorted(k.user_id for k in load_keys_file(path)) == sorted(f"user-{i}" for i in range(16))


def test_a_keys_file_anyone_may_write_is_refused(tmp_path):
    path = tmp_path / "keys.yaml"
    create_key(path, "alice")
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by anyone"):
        load_keys_file(path)
