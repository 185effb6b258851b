"""The ``worker_auth`` section: the bearer tokens the router sends to its HTTP workers
(issue 14). A worker started with ``gpu-router worker --token-file F`` (or
``$GPU_ROUTER_WORKER_TOKEN``) answers 401 to a job call without its token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .errors import ConfigError
from .sections import ConfigSection

MIN_TOKEN_CHARS = 16
_Token = Annotated[str, Field(min_length=MIN_TOKEN_CHARS, max_length=4096, pattern=r"^[!-~]+$")]


class WorkerAuthSection(ConfigSection):
    # sent to every worker (printable ASCII, no spaces, at least 16 characters)
    token: _Token | None = None
    # a file whose first line is the shared token (instead of ``token``)
    token_file: str | None = None
    # per-GPU tokens (gpu_id -> token); a GPU listed here gets its own, the others ``token``
    tokens: dict[str, _Token] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> WorkerAuthSection:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        return self

    @field_validator("token_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must name a file")
        return value


def check_token(token: str, key: str) -> str:
    """``token`` if it is at least 16 printable ASCII characters without spaces, else a
    :class:`ConfigError` naming ``key``."""
    if len(token) < MIN_TOKEN_CHARS or not token.isascii() or not token.isprintable():
        raise ConfigError(key, f"the token must be at least {MIN_TOKEN_CHARS} printable characters")
    if " " in token:
        raise ConfigError(key, "the token must not contain spaces")
    return token


def read_token_file(path: str | Path, key: str = "worker_auth.token_file") -> str:
    """The token in ``path`` (its first line, stripped; :func:`check_token`), or a
    :class:`ConfigError` naming ``key`` if the file cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path}: {exc}") from None
    return check_token(text.split("\n", 1)[0].strip(), f"{key} ({path})")


def worker_tokens(section: WorkerAuthSection) -> dict[str, str | None]:
    """``{"": shared token or None, gpu_id: token, ...}`` with ``token_file`` read now."""
    shared = section.token
    if section.token_file is not None:
        shared = read_token_file(section.token_file)
    return {"": shared, **section.tokens}
