"""The API in-process: envelope, meta, lifecycle, errors, idempotency, admin, OpenAPI."""

from __future__ import annotations

import asyncio

import pytest

from ..app_helpers import (
    H_ADMIN,
    H_ALICE,
    H_BOB,
    body,
    check_schema,
    router_idle,
    running,
    until,
    wait_state,
)

pytestmark = pytest.mark.timeout(30)
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def run(coro):
    return asyncio.run(coro)


def test_the_status_shows_an_in_process_jobs_progress_while_it_runs():
    async def scenario():
        async with running() as (c, app, _fleet):
            b = body(request_id="slow-1", payload={"simulate": {"duration_ms": 400}})
            assert (await c.post("/api/v1/route", json=b, headers=H_ALICE)).status_code == 200
            await wait_state(c, "slow-1", {"processing"}, H_ALICE)
            assert not app.state.service.dispatcher.tasks  # no task per in-process job
            await asyncio.sleep(0.2)
            mid = (await c.get("/api/v1/requests/slow-1", headers=H_ALICE)).json()["data"]
            assert mid["status"] == "processing" and 0.2 < mid["progress"] < 0.9
            done = await wait_state(c, "slow-1", {"completed"}, H_ALICE)
            assert done["progress"] == 1.0

    run(scenario())


def test_submit_complete_status_result_with_meta_and_trace():
    async def scenario():
        async with running() as (c, _app, _fleet):
            r = await c.post(
                "/api/v1/route",
                json=body(payload={"k": [1, 2]}),
                headers={**H_ALICE, "traceparent": TP},
            )
            assert r.status_code == 200, r.text
            check_schema("POST", "/api/v1/route", r)
            env = r.json()
            assert env["status"] == "success" and env["error"] is None
            data = env["data"]
            assert data["status"] == "accepted" and data["assigned_gpu"] in ("gpu-0", "gpu-1")
            assert data["queue_position"] == 0
            meta = env["meta"]
            assert meta["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
            assert meta["gpu_resources"]["device_id"] == data["assigned_gpu"]
            assert "routing_ms" in meta["processing_time"]["components"]
            assert r.headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            rid = data["request_id"]
            done = await wait_state(c, rid, {"completed"}, H_ALICE)
            assert done["progress"] == 1.0 and done["duration"] >= 0
            assert done["result_url"].endswith(f"/api/v1/requests/{rid}/result")
            for path in (f"/api/v1/requests/{rid}", f"/api/v1/route/{rid}"):
                r = await c.get(path, headers=H_ALICE)
                check_schema("GET", path.replace(rid, "{request_id}"), r)
            r = await c.get(f"/api/v1/requests/{rid}/result", headers=H_ALICE)
            check_schema("GET", "/api/v1/requests/{request_id}/result", r)
            assert r.json()["data"]["result"]["gpu_id"] == data["assigned_gpu"]
            for path in (
                "/api/v1/gpus",
                "/api/v1/gpu/status",
                "/api/v1/metrics",
                "/api/v1/user/alice/quota",
            ):
                r = await c.get(path, headers=H_ALICE)
                assert r.status_code == 200
                check_schema("GET", path.replace("alice", "{user_id}"), r)
            m = (await c.get("/api/v1/metrics", headers=H_ALICE)).json()["data"]
            assert m["system"]["completed_requests"] == 1 and set(m["users"]) == {"alice"}
            r = await c.get("/health")
            check_schema("GET", "/health", r)
            prom = (await c.get("/metrics")).text
            assert 'gpu_router_requests_finished_total{priority="3",status="completed"} 1.0' in prom
            assert "alice" not in prom

    run(scenario())


BAD = [
    (b'{"user_id": "alice", "model_id": "m", "priority": NaN}', 400, "bad_json"),
    (b'{"user_id": "alice", "model_id": "m", "priority": 3, "timeout": Infinity}', 400, "bad_json"),
    (b'{"user_id": "alice", "model_id": "m", "priority": 3, "priority": 4}', 400, "bad_json"),
    (b'{"user_id": "alice", "model_id": "\\ud800", "priority": 3}', 400, "bad_json"),
    (
        b'{"user_id": "alice", "model_id": "m", "priority": 3, "payload": '
        + b'{"a":' * 60
        + b"1"
        + b"}" * 61,
        400,
        "bad_json",
    ),
    (b'{"user_id": "alice", "model_id": "m", "priority": ' + b"9" * 50 + b"}", 400, "bad_json"),
    (
        b'{"user_id": "alice", "model_id": "m", "priority": 99999999999999999999}',
        422,
        "invalid_request",
    ),
    (b'{"user_id": "alice", "model_id": "m", "priority": 6}', 422, "invalid_request"),
    (b'{"user_id": "alice", "model_id": "m", "priority": 0}', 422, "invalid_request"),
    (b'{"user_id": "alice", "model_id": "m", "priority": "3"}', 422, "invalid_request"),
    (b'{"user_id": "alice", "model_id": "m", "priority": true}', 422, "invalid_request"),
    (b'{"user_id": "alice", "model_id": "m", "priority": 3.5}', 422, "invalid_request"),
    (b'{"user_id": "alice", "model_id": "m"}', 422, "invalid_request"),
    (b'{"user_id": "alice", "model_id": "m", "priority": 3, "colour": 1}', 422, "invalid_request"),
    (
        b'{"user_id": "alice", "model_id": "m", "priority": 3, "type": "mining"}',
        422,
        "invalid_request",
    ),
    (
        (
            b'{"user_id": "alice", "model_id": "m", "priority": 3, "resource_requirements": '
            b'{"memory": -1}}'
        ),
        422,
        "invalid_request",
    ),
    (
        b'{"user_id": "alice", "model_id": "m", "priority": 3, "callback_url": "file:///x"}',
        422,
        "invalid_request",
    ),
    (
        b'{"user_id": "alice", "model_id": "m", "priority": 3, "request_id": "../etc"}',
        422,
        "invalid_request",
    ),
    (b"[1, 2]", 422, "invalid_request"),
    (b"not json", 400, "bad_json"),
    (b"\xff\xfe\x00", 400, "bad_json"),
    (b"", 400, "bad_request"),
]


def test_bad_input_is_4xx_with_field_and_enqueues_nothing():
    async def scenario():
        async with running() as (c, app, _fleet):
            for raw, status, code in BAD:
                r = await c.post(
                    "/api/v1/route",
                    content=raw,
                    headers={**H_ALICE, "content-type": "application/json"},
                )
                assert r.status_code == status, (raw[:60], r.text)
                check_schema("POST", "/api/v1/route", r)
                err = r.json()["error"]
                assert err["code"] == code and err["details"][0]["field"], raw[:60]
            r = await c.post(
                "/api/v1/route",
                content=b'{"a": 1}',
                headers={**H_ALICE, "content-type": "text/plain"},
            )
            assert r.status_code == 415
            r = await c.post(
                "/api/v1/route",
                content=b"x" * 2_000_000,
                headers={**H_ALICE, "content-type": "application/json"},
            )
            assert r.status_code == 413

            async def chunks():
                for _ in range(40):
                    yield b" " * 50_000

            r = await c.post(
                "/api/v1/route",
                content=chunks(),
                headers={**H_ALICE, "content-type": "application/json"},
            )
            assert r.status_code == 413  # streamed, no Content-Length
            svc = app.state.service
            assert svc.store.count_by_state() == {} and router_idle(svc)
            assert svc.stats.system.total == 0

    run(scenario())


def test_odd_path_ids_are_404():
    async def scenario():
        async with running() as (c, _app, _fleet):
            for rid in ("..%2f..", "%00", "a" * 300, "%F0%9F%98%80", "-x", "nope"):
                for path in (
                    f"/api/v1/requests/{rid}",
                    f"/api/v1/route/{rid}",
                    f"/api/v1/requests/{rid}/result",
                ):
                    r = await c.get(path, headers=H_ALICE)
                    assert r.status_code == 404, (path, r.text)
                r = await c.delete(f"/api/v1/requests/{rid}", headers=H_ALICE)
                assert r.status_code == 404
                r = await c.post(f"/api/v1/admin/gpu/{rid}/maintenance", headers=H_ADMIN)
                assert r.status_code == 404
            r = await c.get("/api/v1/nothing-here", headers=H_ALICE)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
            r = await c.put("/api/v1/route", headers=H_ALICE)
            assert r.status_code == 405 and r.json()["status"] == "error"

    run(scenario())


def test_auth_matrix():
    async def scenario():
        async with running() as (c, _app, _fleet):
            r = await c.post("/api/v1/route", json=body())
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = await c.post("/api/v1/route", json=body(), headers={"authorization": "Bearer no"})
            assert r.status_code == 401
            r = await c.post("/api/v1/route", json=body(user_id="bob"), headers=H_ALICE)
            assert r.status_code == 403
            r = await c.post("/api/v1/route", json=body(request_id="a-1"), headers=H_ALICE)
            assert r.status_code == 200
            r = await c.post(
                "/api/v1/route", json=body(user_id="bob", request_id="b-1"), headers=H_ADMIN
            )
            assert r.status_code == 200
            missing = await c.get("/api/v1/requests/zz-404", headers=H_BOB)
            other = await c.get("/api/v1/requests/a-1", headers=H_BOB)
            assert other.status_code == missing.status_code == 404
            assert other.json()["error"] == {
                "code": "not_found",
                "message": "request a-1 not found",
            }
            assert missing.json()["error"]["message"] == "request zz-404 not found"
            assert (await c.delete("/api/v1/requests/a-1", headers=H_BOB)).status_code == 404
            assert (await c.get("/api/v1/requests/a-1/result", headers=H_BOB)).status_code == 404
            assert (await c.get("/api/v1/requests/a-1", headers=H_ADMIN)).status_code == 200
            assert (await c.get("/api/v1/user/alice/quota", headers=H_BOB)).status_code == 403
            admin_calls = [
                ("POST", "/api/v1/admin/gpu/gpu-0/maintenance"),
                ("POST", "/api/v1/admin/gpu/gpu-0/restart"),
                ("DELETE", "/api/v1/admin/request/a-1"),
                ("PUT", "/api/v1/admin/user/bob/quota"),
            ]
            for method, path in admin_calls:
                r = await c.request(method, path, headers=H_ALICE, json={})
                assert r.status_code == 403, (method, path)
                r = await c.request(method, path, json={})
                assert r.status_code == 401
            m = (await c.get("/api/v1/metrics", headers=H_BOB)).json()["data"]
            assert "alice" not in m["users"]
            assert (await c.get("/health")).status_code == 200
            assert (await c.get("/openapi.json")).status_code == 200

    run(scenario())


def test_trusted_network_identity():
    async def scenario():
        async with running(auth={"trusted_networks": [{"cidr": "10.9.0.0/16"}]}) as (c, _, _f):
            r = await c.post("/api/v1/route", json=body(user_id="carol"))
            assert r.status_code == 200  # service identity acts for any user, no key
            r = await c.post("/api/v1/admin/gpu/gpu-0/maintenance")
            assert r.status_code == 403

    run(scenario())


def test_idempotent_resubmission_and_conflict():
    async def scenario():
        async with running() as (c, app, _fleet):
            b = body(request_id="same-1")
            first = await c.post("/api/v1/route", json=b, headers=H_ALICE)
            again = await c.post("/api/v1/route", json=b, headers=H_ALICE)
            assert first.status_code == again.status_code == 200
            d1, d2 = first.json()["data"], again.json()["data"]
            assert {**d1, "message": ""} == {**d2, "message": ""}
            r = await c.post("/api/v1/route", json={**b, "priority": 4}, headers=H_ALICE)
            assert r.status_code == 409 and r.json()["data"]["status"] == "rejected"
            check_schema("POST", "/api/v1/route", r)
            assert app.state.service.store.count_by_state() in (
                {"processing": 1},
                {"completed": 1},
            )

    run(scenario())


def test_cancel_queued_and_running_and_twice():
    async def scenario():
        async with running(n_gpus=1) as (c, _app, fleet):
            long = {"simulate": {"duration_ms": 5000}}
            r1 = await c.post(
                "/api/v1/route", json=body(request_id="run-1", payload=long), headers=H_ALICE
            )
            r2 = await c.post(
                "/api/v1/route", json=body(request_id="q-1", payload=long), headers=H_ALICE
            )
            assert r1.json()["data"]["status"] == "accepted"
            assert r2.json()["data"]["status"] == "queued"
            assert r2.json()["data"]["queue_position"] == 1
            await wait_state(c, "run-1", {"processing"}, H_ALICE)
            for rid in ("q-1", "run-1"):
                r = await c.delete(f"/api/v1/requests/{rid}", headers=H_ALICE)
                check_schema("DELETE", "/api/v1/requests/{request_id}", r)
                assert r.json()["data"]["cancelled"] is True
                assert r.json()["data"]["status"] == "cancelled"
                r = await c.delete(f"/api/v1/requests/{rid}", headers=H_ALICE)
                assert r.status_code == 200 and r.json()["data"]["cancelled"] is False
            r = await c.get("/api/v1/requests/run-1/result", headers=H_ALICE)
            assert r.status_code == 409
            await until(lambda: not fleet._gpus["gpu-0"].running)  # the worker was told to stop

    run(scenario())


def test_limits_answer_429_with_retry_after_and_incompatible_503():
    async def scenario():
        quota = {"user_quota_manager": {"default_request_limit": 2}}
        async with running(n_gpus=1, **quota) as (c, app, _fleet):
            long = {"simulate": {"duration_ms": 5000}}
            for _i in range(2):
                r = await c.post("/api/v1/route", json=body(payload=long), headers=H_ALICE)
                assert r.status_code == 200
            r = await c.post("/api/v1/route", json=body(payload=long), headers=H_ALICE)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            assert r.json()["data"]["status"] == "rejected"
            assert r.json()["error"]["code"] == "quota_exceeded"
            check_schema("POST", "/api/v1/route", r)
            r = await c.post("/api/v1/route", json=body(user_id="bob"), headers=H_BOB)
            assert r.status_code == 200  # one user's limit never touches another
            big = body(user_id="bob", resource_requirements={"memory": 9_000_000})
            r = await c.post("/api/v1/route", json=big, headers=H_BOB)
            # no GPU can ever serve it: 503 (DESIGN 5.1), no Retry-After (retrying cannot help)
            assert r.status_code == 503 and r.json()["error"]["code"] == "incompatible"
            assert "retry-after" not in r.headers and "retry_after" not in r.json()["error"]
            d = r.json()["data"]
            assert d["status"] == "rejected" and d["message"].startswith("no GPU can serve it")
            check_schema("POST", "/api/v1/route", r)
            assert len(app.state.service.requests.live) == 3  # the incompatible one is not kept

    run(scenario())


def test_admin_operations():
    async def scenario():
        async with running(n_gpus=2) as (c, _app, _fleet):
            r = await c.post(
                "/api/v1/admin/gpu/gpu-0/maintenance",
                json={"reason": "fan", "estimated_duration": 30},
                headers=H_ADMIN,
            )
            assert r.status_code == 200
            check_schema("POST", "/api/v1/admin/gpu/{gpu_id}/maintenance", r)
            gpus = (await c.get("/api/v1/gpus", headers=H_ADMIN)).json()["data"]["gpus"]
            assert {g["gpu_id"]: g["status"] for g in gpus}["gpu-0"] == "maintenance"
            for _ in range(3):
                r = await c.post("/api/v1/route", json=body(), headers=H_ALICE)
                assert r.json()["data"]["assigned_gpu"] in ("gpu-1", None)
            r = await c.post(
                "/api/v1/admin/gpu/gpu-0/restart", json={"force": True}, headers=H_ADMIN
            )
            assert r.status_code == 200 and r.json()["data"]["status"] == "active"
            r = await c.put(
                "/api/v1/admin/user/alice/quota",
                json={"concurrent_requests_limit": 7, "gpu_time_limit": 5},
                headers=H_ADMIN,
            )
            assert r.status_code == 200
            check_schema("PUT", "/api/v1/admin/user/{user_id}/quota", r)
            q = r.json()["data"]["quotas"]
            assert q["concurrent_requests"]["limit"] == 7 and q["gpu_time"]["limit"] == 5
            r = await c.put("/api/v1/admin/user/alice/quota", json={}, headers=H_ADMIN)
            assert r.status_code == 422
            r = await c.post(
                "/api/v1/route",
                json=body(request_id="adm-1", payload={"simulate": {"duration_ms": 5000}}),
                headers=H_ALICE,
            )
            r = await c.request(
                "DELETE", "/api/v1/admin/request/adm-1", json={"reason": "x"}, headers=H_ADMIN
            )
            assert r.status_code == 200 and r.json()["data"]["cancelled"] is True
            check_schema("DELETE", "/api/v1/admin/request/{request_id}", r)
            r = await c.post("/api/v1/admin/gpu/gpu-9/restart", headers=H_ADMIN)
            assert r.status_code == 404

    run(scenario())


def test_gpu_crash_reroutes_and_marks_error_until_recovered():
    async def scenario():
        async with running(n_gpus=2) as (c, _app, fleet):
            r = await c.post(
                "/api/v1/route",
                json=body(request_id="crash-1", payload={"simulate": {"duration_ms": 400}}),
                headers=H_ALICE,
            )
            first = r.json()["data"]["assigned_gpu"]
            await wait_state(c, "crash-1", {"processing"}, H_ALICE)
            fleet.crash(first)
            done = await wait_state(c, "crash-1", {"completed", "failed"}, H_ALICE)
            assert done["status"] == "completed" and done["assigned_gpu"] != first
            assert done["retries"] == 1
            gpus = (await c.get("/api/v1/gpus", headers=H_ALICE)).json()["data"]["gpus"]
            assert {g["gpu_id"]: g["status"] for g in gpus}[first] == "error"
            for _ in range(4):  # nothing goes to the crashed GPU
                r = await c.post("/api/v1/route", json=body(), headers=H_ALICE)
                assert r.json()["data"]["assigned_gpu"] != first
            fleet.recover(first)
            for _ in range(200):
                gpus = (await c.get("/api/v1/gpus", headers=H_ALICE)).json()["data"]["gpus"]
                if {g["gpu_id"]: g["status"] for g in gpus}[first] == "active":
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("GPU never came back")

    run(scenario())


def test_timeout_fails_request_and_frees_slot():
    async def scenario():
        async with running(n_gpus=1) as (c, _app, _fleet):
            r = await c.post(
                "/api/v1/route",
                json=body(
                    request_id="slow-1", timeout=100, payload={"simulate": {"duration_ms": 5000}}
                ),
                headers=H_ALICE,
            )
            assert r.status_code == 200
            done = await wait_state(c, "slow-1", {"failed"}, H_ALICE)
            assert done["error"] == "timeout"
            r = await c.post("/api/v1/route", json=body(), headers=H_ALICE)
            assert r.json()["data"]["status"] == "accepted"

    run(scenario())
