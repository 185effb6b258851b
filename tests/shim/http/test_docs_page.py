"""GET /docs: the API reference page, rendered from /openapi.json, self-contained."""

from __future__ import annotations

import asyncio
import re
from html import escape
from importlib.resources import files

from gpu_router.shim.http.docs_page import _anchor, render_docs
from gpu_router.shim.http.openapi import openapi_document

from ..app_helpers import running

METHODS = ("get", "post", "put", "delete")


def test_docs_page_lists_every_operation_and_fetches_nothing():
    async def scenario():
        async with running() as (c, _app, _fleet):
            r = await c.get("/docs")
            doc = (await c.get("/openapi.json")).json()
            return r, doc

    r, doc = asyncio.run(scenario())
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert page.startswith("<!DOCTYPE html>")
    for path, item in doc["paths"].items():
        assert escape(path) in page, path
        for method in METHODS:
            if method in item:
                assert (
                    f'<span class="method {method}">{method.upper()}</span>{escape(path)}' in page
                )
                assert escape(item[method]["summary"]) in page
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page, name
    # no CDN, no script, nothing external: every link stays on the page or on this server
    assert "//" not in page  # no http://, https:// nor protocol-relative URL anywhere
    assert "<script" not in page and "@import" not in page and "<link" not in page
    assert all(
        h.startswith(("#", "/")) and not h.startswith("//")
        for h in re.findall(r'(?:href|src)="([^"]*)"', page)
    )
    assert files("gpu_router.shim.http").joinpath("assets/docs.css").read_text() in page


def test_examples_show_bodies_and_answers():
    page = render_docs(openapi_document())
    # the submission's example body: the required fields, no null-able optional ones
    i = page.index('id="op-post-api-v1-route"')
    section = page[i : page.index("</section>", i)]
    assert "Example body" in section and "&quot;user_id&quot;: &quot;alice&quot;" in section
    assert "callback_url&quot;:" not in section
    assert "&quot;status&quot;: &quot;success&quot;" in section  # the 200 envelope
    assert "&quot;code&quot;: &quot;rate_limited&quot;" in section  # the 429 envelope
    assert "&quot;retry_after&quot;: 1.0" in section
    assert 'class="status">503</span>' in section
    # path parameters with their pattern
    j = page.index(f'id="{_anchor("get", "/api/v1/requests/{request_id}")}"')
    assert "request_id" in page[j : page.index("</section>", j)]
