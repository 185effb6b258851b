"""Unique sort keys kept in order, for the central queue's bands (queue.py).

A plain list searched with ``bisect`` while it is short (the common case: a band
holds a few requests; list insertion and ``bisect`` run in C), a
``sortedcontainers.SortedList`` once it holds more than ``SPLIT`` keys (where shifting
a long list would cost more), and back to a list when it has shrunk to
``SPLIT // 4``. Both hold the same keys in the same order, so every answer (order,
index, first key) is the same whichever holds them.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from typing import Any

from sortedcontainers import SortedList

#: above this many keys a SortedList holds them
SPLIT = 2048


class SortedKeys:
    """Ordered set of unique, mutually comparable keys (tuples here)."""

    __slots__ = ("_big", "_keys")

    def __init__(self) -> None:
        self._keys: list[Any] = []
        self._big: SortedList | None = None

    def __len__(self) -> int:
        big = self._big
        return len(self._keys) if big is None else len(big)

    def __iter__(self) -> Iterator[Any]:
        big = self._big
        return iter(self._keys) if big is None else iter(big)

    def __getitem__(self, index: int) -> Any:
        big = self._big
        return self._keys[index] if big is None else big[index]

    def add(self, key: Any) -> None:
        big = self._big
        if big is not None:
            big.add(key)
            return
        keys = self._keys
        insort(keys, key)
        if len(keys) > SPLIT:
            self._big = SortedList(keys)
            self._keys = []

    def remove(self, key: Any) -> None:
        """Take ``key`` out (ValueError when it is not there)."""
        big = self._big
        if big is not None:
            big.remove(key)
            if len(big) <= SPLIT // 4:
                self._keys = list(big)
                self._big = None
            return
        keys = self._keys
        i = bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            raise ValueError(f"{key!r} not in list")
        del keys[i]

    def index(self, key: Any) -> int:
        """0-based place of ``key`` (ValueError when it is not there)."""
        big = self._big
        if big is not None:
            place: int = big.index(key)
            return place
        keys = self._keys
        i = bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            raise ValueError(f"{key!r} not in list")
        return i
