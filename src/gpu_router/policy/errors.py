"""The one base exception of the project and its validation error."""

from __future__ import annotations


class RouterError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidValue(RouterError, ValueError):
    """A value that cannot be: names the field, the bad value and why."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")
