"""JSON encoding on the hot path: orjson (about ten times faster than the standard
library's encoder on the answers and journal rows here), with the standard library as the
fallback for what orjson refuses: integers beyond 64 bits, which a client may send (up to
``strict_json.MAX_INT_DIGITS`` digits) inside ``payload``.

Reading stays with the standard library: orjson reads integers beyond 64 bits as floats.

Output is compact UTF-8 (no spaces, non-ASCII characters as themselves). NaN and
infinities, which never come in (the strict reader refuses them), are written as
``null`` by orjson; the fallback refuses them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_sorted = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
).encode


def dumps_bytes(obj: Any) -> bytes:
    """``obj`` as compact JSON bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # an integer beyond 64 bits (or a type orjson does not know)
        return _compact(obj).encode("utf-8")


def dumps(obj: Any, *, sort_keys: bool = False) -> str:
    """``obj`` as compact JSON text; ``sort_keys`` sorts every object's keys (a canonical
    form: equal values give equal text)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS if sort_keys else 0).decode()
    except TypeError:
        return (_sorted if sort_keys else _compact)(obj)
