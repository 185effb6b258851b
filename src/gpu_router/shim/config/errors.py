"""The one error a bad configuration raises: the dotted key and why."""

from __future__ import annotations

from gpu_router.policy import RouterError


class ConfigError(RouterError):
    """The configuration cannot be used: ``key`` is the dotted path, ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid configuration: {key}: {reason}")
