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
_INT_LIMIT = 10**MAX_INT_DIGITS
_SURROGATE = re.compile("[\ud800-\udfff]")
#: what the tree walk looks for can only come from these in the raw bytes (valid UTF-8
#: has no surrogates; JSON writes them as \uD800-\uDFFF escapes): a surrogate escape, a
#: run of more than MAX_INT_DIGITS digits, or an exponent of three digits or more (the
#: only ways to leave float range); found anywhere, strings included, the walk runs
_MAYBE_BAD = re.compile(rb"\\u[dD][89a-fA-F]|[0-9]{%d}|[eE][+-]?[0-9]{3}" % (MAX_INT_DIGITS + 1))


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


#: one decoder for every body (``json.loads`` with hooks builds a new one per call)
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_constant)


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _lone_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _check_tree(root: Any, max_depth: int) -> None:
    """Depth, lone surrogates, integers over MAX_INT_DIGITS digits and numbers out of float
    range (``1e999`` parses as inf), checked in one walk after a parse at C speed (hooks
    on every number would cost more than the parse). Paths are built only for an error."""
    stack: list[tuple[Any, int, str, str | int]] = [(root, 1, "", "")]
    while stack:
        node, depth, parent, key = stack.pop()
        t = type(node)
        if t is str:
            if _lone_surrogate(node):
                raise BadJson(_path(parent, key) or "body", "string contains a lone surrogate")
        elif t is int:
            if not -_INT_LIMIT < node < _INT_LIMIT:
                raise BadJson(
                    _path(parent, key) or "body", f"integer with more than {MAX_INT_DIGITS} digits"
                )
        elif t is float:
            if not math.isfinite(node):
                raise BadJson(_path(parent, key) or "body", "number is out of range")
        elif t is dict or t is list:
            path = _path(parent, key) if depth > 1 else ""
            if depth > max_depth:
                raise BadJson(path or "body", f"nested deeper than {max_depth} levels")
            if t is dict:
                for k, v in node.items():
                    if _lone_surrogate(k):
                        raise BadJson(path or "body", "key contains a lone surrogate")
                    stack.append((v, depth + 1, path, k))
            else:
                for n, v in enumerate(node):
                    stack.append((v, depth + 1, path, n))


def loads_strict(body: bytes, *, max_depth: int = 32) -> Any:
    """Parse ``body`` or raise :class:`BadJson`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson("body", f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = _DECODER.decode(text)
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
    if (
        _MAYBE_BAD.search(body) is not None
        or body.count(b"{") + body.count(b"[") > max_depth  # (else it cannot be deeper)
    ):
        _check_tree(value, max_depth)
    return value
