"""The seed's ``meta`` middleware (seed 004, 3.6) added in one line to a bare Starlette app
and to a FastAPI app: answers carry the block, traces continue, spans are timed."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from gpu_router.meta import MetaMiddleware, add_metadata_to_response, span
from gpu_router.shim.config import ApiMetadataSection

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
GPU = {
    "device_id": 0,
    "device_name": "NVIDIA A100",
    "memory_used_mb": 1024.5,
    "memory_total_mb": 40960,
    "utilization_percent": 35.8,
    "temperature_c": 65,
}


class AppClient:
    """Calls an ASGI app in-process through httpx (one event loop per call)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def _call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self._call("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self._call("POST", url, **kw)


def starlette_app(**kw: Any) -> Starlette:
    def predict(request: Request) -> JSONResponse:
        with span("inference"):
            total = sum(range(1000))
        return JSONResponse({"result": total})

    def listing(request: Request) -> JSONResponse:
        return JSONResponse([1, 2, 3])

    def text(request: Request) -> PlainTextResponse:
        return PlainTextResponse("plain")

    def manual(request: Request) -> JSONResponse:
        # the manual helper (3.6.2); the middleware then rewrites the block (same request)
        return JSONResponse(add_metadata_to_response({"ok": True}))

    app = Starlette(
        routes=[
            Route("/predict", predict),
            Route("/list", listing),
            Route("/text", text),
            Route("/manual", manual),
        ]
    )
    app.add_middleware(MetaMiddleware, **kw)
    return app


def fastapi_app(**kw: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(MetaMiddleware, **kw)

    @app.post("/predict")
    async def predict(item: dict[str, int]) -> dict[str, int]:
        with span("preprocessing"):
            x = item["x"] * 2
        return {"y": x}

    return app


def test_starlette_answer_carries_the_seed_meta_block() -> None:
    client = AppClient(starlette_app(gpu=lambda: GPU))
    r = client.get("/predict", headers={"traceparent": PARENT, "x-request-id": "req-42"})
    assert r.status_code == 200
    body = r.json()
    assert body["result"] == 499500
    meta = body["meta"]
    assert meta["request_id"] == "req-42"
    assert meta["trace_id"] == TRACE
    assert meta["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", meta["timestamp"])
    assert meta["processing_time"]["total_ms"] >= 0
    assert set(meta["processing_time"]["components"]) == {"inference_ms"}
    assert meta["gpu_resources"] == GPU
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["traceparent"].split("-")[1] == TRACE
    assert r.headers["traceparent"] != PARENT  # this hop's own span
    assert r.headers["x-request-id"] == "req-42"


def test_starlette_non_objects_and_non_json_are_left_alone_unless_wrapped() -> None:
    plain = AppClient(starlette_app())
    assert plain.get("/list").json() == [1, 2, 3]
    assert plain.get("/text").text == "plain"
    wrapped = AppClient(starlette_app(wrap=True))
    body = wrapped.get("/list").json()
    assert (body["status"], body["data"], body["error"]) == ("success", [1, 2, 3], None)
    assert len(body["meta"]["trace_id"]) == 32  # a new trace: none came in
    assert wrapped.get("/predict").json()["data"]["result"] == 499500
    assert wrapped.get("/text").text == "plain"


def test_manual_helper_and_minimal_detail_level() -> None:
    client = AppClient(starlette_app(config=ApiMetadataSection(detail_level="minimal")))
    meta = client.get("/manual").json()["meta"]
    assert set(meta) == {"request_id", "timestamp", "processing_time", "version"}
    assert "components" not in meta["processing_time"]
    assert add_metadata_to_response({"a": 1}) == {"a": 1}  # outside a request: unchanged


def test_disabled_config_adds_nothing() -> None:
    client = AppClient(starlette_app(config=ApiMetadataSection(enabled=False)))
    assert client.get("/predict").json() == {"result": 499500}


@pytest.mark.parametrize("detail", ["standard", "full"])
def test_fastapi_answer_and_validation_error_carry_meta(detail: str) -> None:
    client = AppClient(fastapi_app(config=ApiMetadataSection(detail_level=detail)))
    r = client.post("/predict", json={"x": 21}, headers={"traceparent": PARENT})
    body = r.json()
    assert body["y"] == 42
    assert body["meta"]["trace_id"] == TRACE
    components = body["meta"]["processing_time"].get("components")
    assert (components is not None and set(components) == {"preprocessing_ms"}) == (
        detail == "full"
    )
    bad = client.post("/predict", json={"x": "nope"})
    assert bad.status_code == 422
    assert "detail" in bad.json() and "request_id" in bad.json()["meta"]
