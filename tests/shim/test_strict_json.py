"""The strict JSON reader refuses what json.loads lets through."""

from __future__ import annotations

import pytest

from gpu_router.shim.strict_json import BadJson, loads_strict


def test_plain_json():
    assert loads_strict(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": ' + b"9" * 40 + b"}", "digits"),
        (b'{"a": 1, "a": 2}', "duplicate"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b"\xff\xfe", "UTF-8"),
        (b"[" * 40 + b"]" * 40, "nested"),
        (b"[" * 100_000, "nested"),
        (b'{"a": ', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_refused(body, words):
    with pytest.raises(BadJson) as info:
        loads_strict(body, max_depth=32)
    assert words in str(info.value)


def test_depth_limit_is_exact():
    ok = b"[" * 32 + b"]" * 32
    assert loads_strict(ok, max_depth=32) is not None
    with pytest.raises(BadJson):
        loads_strict(b"[" + ok + b"]", max_depth=32)


def test_valid_surrogate_pair_is_fine():
    assert loads_strict(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
