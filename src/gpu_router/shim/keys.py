"""API keys kept in a file: ``gpu-router keys create --user U [--role R] [--file PATH]``.

The file (``auth.keys_file``) is YAML, ``{keys: [{key_sha256, user_id, role}, ...]}``,
the same entries as ``auth.keys``; the service reads it at start with the inline keys.
``create`` draws a key from :mod:`secrets` (256 bits), appends its SHA-256 digest to the
file (written whole to a temporary file and renamed over it, mode 0600), and prints the
key once, on stdout; it is never stored in clear nor logged.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpu_router.shim.config import ApiKey, AuthSection, ConfigError, load_config

DEFAULT_FILE = "gpu-router-keys.yaml"
KEY_PREFIX = "grk_"


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("auth.keys_file", f"file not found: {path}") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError("auth.keys_file", f"cannot read {path}: {exc}") from None
    if raw is None:
        return []
    if not isinstance(raw, dict) or set(raw) - {"keys"} or not isinstance(raw.get("keys"), list):
        raise ConfigError("auth.keys_file", f"{path} must be a mapping {{keys: [...]}}")
    entries: list[dict[str, Any]] = raw["keys"]
    return entries


def load_keys_file(path: str | Path) -> list[ApiKey]:
    """The keys of a keys file, validated like ``auth.keys``; :class:`ConfigError` names
    the file and the entry that is wrong. A file anyone may write is refused (anyone could
    add an admin key)."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & stat.S_IWOTH:
            raise ConfigError("auth.keys_file", f"{path} is writable by anyone: chmod 600 it")
    out = []
    for i, entry in enumerate(_read(Path(path))):
        try:
            out.append(ApiKey.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"auth.keys_file ({path}) keys.{i}.{where}", err["msg"]) from None
    return out


def all_keys(auth: AuthSection) -> list[ApiKey]:
    """The inline keys, then those of ``auth.keys_file`` (when set)."""
    if auth.keys_file is None:
        return list(auth.keys)
    return [*auth.keys, *load_keys_file(auth.keys_file)]


def create_key(path: str | Path, user_id: str, role: str = "user") -> str:
    """A new key for ``user_id``: its digest is appended to the file; the key is returned."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = {
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "user_id": user_id,
        "role": role,
    }
    try:
        ApiKey.model_validate(entry)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ConfigError(str(err["loc"][0]), err["msg"]) from None
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(file.parent, os.O_RDONLY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)  # two creates at once: both keys are kept
        _write(file, [*(_read(file) if file.exists() else []), entry])
    finally:
        os.close(dir_fd)  # releases the lock
    return key


def _write(file: Path, entries: list[dict[str, Any]]) -> None:
    text = "# API keys (SHA-256 digests) written by `gpu-router keys create`\n"
    text += yaml.safe_dump({"keys": entries}, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_file(config: str | None) -> str:
    """``auth.keys_file`` of the config (``--config``, $CONFIG_PATH, ./config.yaml), else
    :data:`DEFAULT_FILE`."""
    cfg = load_config(config)
    return cfg.auth.keys_file or DEFAULT_FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key; print it once on stdout")
    create.add_argument("--user", required=True, help="the user_id the key acts as")
    create.add_argument("--role", choices=["user", "service", "admin"], default="user")
    create.add_argument(
        "--file",
        metavar="PATH",
        help=f"keys file (default: the config's auth.keys_file, else ./{DEFAULT_FILE})",
    )
    create.add_argument("--config", metavar="FILE", help="config that names auth.keys_file")


def run(args: argparse.Namespace) -> int:
    try:
        path = args.file or default_file(args.config)
        key = create_key(path, args.user, args.role)
    except (ConfigError, OSError) as exc:
        print(f"gpu-router keys: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(
        f"gpu-router keys: created a {args.role} key for {args.user} in {path} (only its "
        "SHA-256 digest is stored: this is the only time the key is shown); the router "
        "reads the file at start (auth.keys_file, or serve --keys-file)",
        file=sys.stderr,
    )
    return 0
