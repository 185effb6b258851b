"""Hot-path JSON: orjson output, the standard library's for what orjson refuses."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from gpu_router.shim import fastjson

from .app_helpers import H_ALICE, body, running

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**31), max_value=10**31)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_round_trips_and_the_canonical_form_ignores_key_order(value):
    text = fastjson.dumps(value)
    assert json.loads(text) == value
    assert fastjson.dumps_bytes(value).decode() == text
    if isinstance(value, dict):
        reordered = dict(reversed(list(value.items())))
        assert fastjson.dumps(reordered, sort_keys=True) == fastjson.dumps(value, sort_keys=True)


def test_big_integers_fall_back_to_the_standard_library():
    big = {"b": 1, "a": 10**30, "é": "ü"}
    assert fastjson.dumps(big) == '{"b":1,"a":1000000000000000000000000000000,"é":"ü"}'
    assert fastjson.dumps(big, sort_keys=True).startswith('{"a":1000000000000000000000000000000')
    assert fastjson.dumps_bytes({"a": 1}) == b'{"a":1}'


def test_a_payload_with_a_30_digit_integer_is_accepted_and_journaled(tmp_path):
    import asyncio

    async def scenario():
        async with running(str(tmp_path / "j.sqlite3")) as (c, app, _):
            b = body(request_id="big-1", payload={"n": 10**30, "text": "çok güzel"})
            r = await c.post("/api/v1/route", json=b, headers=H_ALICE)
            assert r.status_code == 200, r.text
            again = await c.post("/api/v1/route", json=b, headers=H_ALICE)
            assert again.status_code == 200  # the same body: the original answer
            svc = app.state.service
            svc.store.flush()
            stored = svc.store.journal._select("WHERE request_id = ?", ("big-1/alice",))
            assert svc.store.journal._record(stored[0]).body["payload"]["n"] == 10**30

    asyncio.run(scenario())
