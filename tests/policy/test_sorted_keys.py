"""SortedKeys answers as a SortedList does, as a short list and past SPLIT."""

from __future__ import annotations

import random

import pytest
from sortedcontainers import SortedList

from gpu_router.policy import sorted_keys
from gpu_router.policy.sorted_keys import SortedKeys


def _same(ours: SortedKeys, ref: SortedList) -> None:
    assert len(ours) == len(ref)
    assert list(ours) == list(ref)
    if len(ref):
        assert ours[0] == ref[0]


@pytest.mark.parametrize("split", [4, sorted_keys.SPLIT])
def test_matches_sortedlist_through_adds_and_removes(monkeypatch, split):
    monkeypatch.setattr(sorted_keys, "SPLIT", split)
    rng = random.Random(7)
    ours, ref = SortedKeys(), SortedList()
    live: list[tuple[float, int, str]] = []
    seq = 0
    for step in range(3 * split + 200):
        grow = step < 2 * split or rng.random() < 0.3
        if grow or not live:
            key = (float(rng.randrange(50)), seq, f"r{seq}")
            seq += 1
            ours.add(key)
            ref.add(key)
            live.append(key)
        else:
            key = live.pop(rng.randrange(len(live)))
            ours.remove(key)
            ref.remove(key)
        if step % 7 == 0 or len(ref) in (split, split + 1, split // 4):
            _same(ours, ref)
            probe = live[rng.randrange(len(live))] if live else None
            if probe is not None:
                assert ours.index(probe) == ref.index(probe)
    _same(ours, ref)
    while live:
        key = live.pop()
        ours.remove(key)
        ref.remove(key)
    _same(ours, ref)


def test_missing_key_is_refused():
    keys = SortedKeys()
    keys.add((1.0, 0, "a"))
    with pytest.raises(ValueError, match="not in list"):
        keys.remove((2.0, 1, "b"))
    with pytest.raises(ValueError, match="not in list"):
        keys.index((0.5, 2, "c"))
