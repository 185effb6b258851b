"""Helpers for the service tests: an app over a virtual fleet, run in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from gpu_router.shim.config import config_from_mapping
from gpu_router.shim.gpu_sources.virtual import VirtualFleet
from gpu_router.shim.http.app import create_app
from gpu_router.shim.http.openapi import openapi_document

ALICE = "alice-key-0123456789"
BOB = "bob-key-000123456789"
ADMIN = "admin-key-0123456789"
H_ALICE = {"authorization": f"Bearer {ALICE}"}
H_BOB = {"authorization": f"Bearer {BOB}"}
H_ADMIN = {"authorization": f"Bearer {ADMIN}"}

BASE_CONFIG: dict[str, Any] = {
    "auth": {
        "keys": [
            {"key": ALICE, "user_id": "alice"},
            {"key": BOB, "user_id": "bob"},
            {"key": ADMIN, "user_id": "ops", "role": "admin"},
        ]
    },
    "dispatch": {
        "poll_interval": 0.01,
        "max_poll_interval": 0.05,
        "health_probe_interval": 0.05,
        "callback_backoff": 0.01,
    },
    "request_router": {"max_retries": 0, "retry_delay": 0.01},
    "error_handler": {"retry_delay": 0.0, "gpu_cooldown_period": 0.2, "base_ejection_s": 0.1},
}


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "user_id": "alice",
        "model_id": "llama",
        "priority": 3,
        "type": "inference",
        "resource_requirements": {
            "memory": 1000,
            "compute_units": 1,
            "max_batch_size": 1,
            "expected_duration": 20,
        },
    }
    b.update(kw)
    return b


@contextlib.asynccontextmanager
async def running(
    journal_path: str = ":memory:",
    n_gpus: int = 2,
    fleet: VirtualFleet | None = None,
    http: httpx.AsyncClient | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, Any, VirtualFleet]]:
    journal: dict[str, Any] = {"path": journal_path}
    if journal_path != ":memory:":  # the intake log beside it, not in /dev/shm
        journal["intake_dir"] = str(Path(journal_path).resolve().parent)
    cfg = config_from_mapping(merge(merge(BASE_CONFIG, {"journal": journal}), overrides))
    fleet = fleet or VirtualFleet(n_gpus, period_s=0.02)
    app = create_app(cfg, gpu_source=fleet, http=http)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client, app, fleet


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait until ``check()`` (an awaitable's result, or a plain value) is true, polling
    every 10 ms; AssertionError after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.01)


async def wait_state(
    client: httpx.AsyncClient, rid: str, states: set[str], headers: dict, timeout: float = 5.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await client.get(f"/api/v1/requests/{rid}", headers=headers)
        data = r.json()["data"]
        if data and data["status"] in states:
            return data
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{rid} still {data and data['status']} after {timeout}s")
        await asyncio.sleep(0.01)


_DOC = openapi_document()
_RESOLVER_DOC = json.loads(json.dumps(_DOC))


def check_schema(method: str, path: str, response: httpx.Response) -> None:
    """The answer is documented for this operation and matches its schema."""
    op = _DOC["paths"][path][method.lower()]
    spec = op["responses"].get(str(response.status_code))
    assert spec is not None, f"{method} {path}: {response.status_code} not documented"
    schema = dict(spec["content"]["application/json"]["schema"])
    schema["components"] = _RESOLVER_DOC["components"]
    jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)


def router_idle(svc: Any) -> bool:
    """Whether the service's Router holds no request (none queued, none running)."""
    fleet = svc.router.fleet_summary()
    return fleet.queued == 0 and fleet.running == 0
