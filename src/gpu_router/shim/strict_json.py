"""A JSON reader for untrusted bodies that refuses what :func:`json.loads` lets through.

Refused, with the place and the reason: invalid UTF-8, NaN and Infinity (literal or by
overflow, ``1e999``), integers longer than 32 digits, duplicate keys in one object, lone
UTF-16 surrogates (``"\\ud800"``), nesting deeper than ``max_depth``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_INT_DIGITS = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadJson(ValueError):
    """The body is not acceptable JSON; ``field`` is a JSON-pointer-like path or ``body``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise BadJson(k, "duplicate key")
            seen.add(k)
    return obj


def _constant(name: str) -> Any:
    raise BadJson("body", f"{name} is not allowed")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BadJson("body", f"integer with more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson("body", f"number {text[:40]} is out of range")
    return value


def _check_tree(root: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int, str]] = [(root, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth > max_depth:
                raise BadJson(path or "body", f"nested deeper than {max_depth} levels")
            for k, v in node.items():
                if _SURROGATE.search(k):
                    raise BadJson(path or "body", "key contains a lone surrogate")
                stack.append((v, depth + 1, f"{path}.{k}" if path else k))
        elif isinstance(node, list):
            if depth > max_depth:
                raise BadJson(path or "body", f"nested deeper than {max_depth} levels")
            for i, v in enumerate(node):
                stack.append((v, depth + 1, f"{path}[{i}]"))
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise BadJson(path or "body", "string contains a lone surrogate")


def loads_strict(body: bytes, *, max_depth: int = 32) -> Any:
    """Parse ``body`` or raise :class:`BadJson`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson("body", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_constant,
            parse_int=_int,
            parse_float=_float,
        )
    except BadJson:
        raise
    except RecursionError:
        raise BadJson("body", f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise BadJson(
            "body", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # int() digit limits and the like
        raise BadJson("body", f"not valid JSON: {exc}") from None
    _check_tree(value, max_depth)
    return value
