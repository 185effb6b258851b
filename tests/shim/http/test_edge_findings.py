"""Issue 14's edge findings in-process: no redirect built from Host, every method in a
405's Allow, and an integral ``priority: 5.0`` read as the integer JSON Schema says it is."""

from __future__ import annotations

import asyncio

import pytest

from ..app_helpers import H_ALICE, body, check_schema, running

pytestmark = pytest.mark.timeout(30)


def test_a_trailing_slash_is_a_404_in_the_envelope_not_a_redirect_to_the_host_header():
    async def scenario():
        async with running() as (c, _app, _fleet):
            for path in ("/health/", "/api/v1/gpus/", "/api/v1/requests/abc/"):
                r = await c.get(path, headers={**H_ALICE, "host": "evil.example"})
                assert r.status_code == 404, (path, r.status_code)
                assert "location" not in r.headers
                assert r.json()["error"]["code"] == "not_found"

    asyncio.run(scenario())


def test_405_on_a_request_lists_every_method_it_allows():
    async def scenario():
        async with running() as (c, _app, _fleet):
            r = await c.put("/api/v1/requests/abc", headers=H_ALICE)
            assert r.status_code == 405 and r.json()["status"] == "error"
            allowed = {m.strip() for m in r.headers["allow"].split(",")}
            assert allowed == {"GET", "HEAD", "DELETE"}
            # both methods still reach their handlers
            assert (await c.get("/api/v1/requests/abc", headers=H_ALICE)).status_code == 404
            assert (await c.delete("/api/v1/requests/abc", headers=H_ALICE)).status_code == 404

    asyncio.run(scenario())


def test_an_integral_float_priority_is_accepted_and_a_fraction_refused():
    async def scenario():
        async with running() as (c, _app, _fleet):
            r = await c.post("/api/v1/route", json=body(priority=5.0), headers=H_ALICE)
            assert r.status_code == 200, r.text
            check_schema("POST", "/api/v1/route", r)
            rid = r.json()["data"]["request_id"]
            got = (await c.get(f"/api/v1/requests/{rid}", headers=H_ALICE)).json()["data"]
            assert got["priority"] == 5 and isinstance(got["priority"], int)
            r = await c.post("/api/v1/route", json=body(priority=4.5), headers=H_ALICE)
            assert r.status_code == 422
            assert r.json()["error"]["details"][0]["field"] == "priority"
            r = await c.post("/api/v1/route", json=body(priority=True), headers=H_ALICE)
            assert r.status_code == 422

    asyncio.run(scenario())
