"""The strict JSON reader refuses what json.loads lets through."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.shim.http import strict_json
from gpu_router.shim.http.strict_json import BadJson, loads_strict


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


def _outcome(body: bytes, max_depth: int) -> object:
    try:
        return ("ok", loads_strict(body, max_depth=max_depth))
    except BadJson as exc:
        return ("refused", str(exc))


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=6),
    st.sampled_from(
        [10**32 - 1, 10**32, -(10**35), "\ud800", "a\udfffb", "\ud83d\ude00", "\\ud800"]
    ),
)
_trees = st.recursive(
    _leaves,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(
            st.text(st.characters(codec=None, exclude_categories=()), max_size=3), kids, max_size=3
        )
    ),
    max_leaves=12,
)
_numbers = st.sampled_from(["1e999", "-1E+400", "1.5e308", "2e-400", "1e0308", "7e30"])


@settings(max_examples=400, deadline=None)
@given(
    tree=_trees,
    number=st.one_of(st.none(), _numbers),
    ascii_only=st.booleans(),
    depth=st.integers(1, 6),
)
def test_the_raw_byte_prescan_never_skips_a_walk_that_would_refuse(tree, number, ascii_only, depth):
    """The tree walk runs only when the raw bytes could hold what it refuses; it must give
    the same outcome as a reader that always walks."""
    text = json.dumps([tree, 0], ensure_ascii=ascii_only)
    if number is not None:
        text = text[: -len("0]")] + number + "]"
    body = text.encode("utf-8", errors="surrogatepass")
    always = re.compile(b"")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(strict_json, "_MAYBE_BAD", always)
        expected = _outcome(body, depth)
    got = _outcome(body, depth)
    if expected[0] == "ok" and got[0] == "ok":
        assert json.dumps(got[1], sort_keys=True) == json.dumps(expected[1], sort_keys=True)
    else:
        assert got == expected
