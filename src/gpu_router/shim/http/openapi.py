"""The OpenAPI 3.1 document served at /openapi.json, generated from ``schemas``.

Every operation lists each status it can answer with the envelope schema of that answer,
so a client (or schemathesis) can check answers against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gpu_router.shim.http import schemas as s

REF = "#/components/schemas/{model}"

_ERRORS = {
    400: "Malformed body (not JSON, NaN, duplicate keys, too deep, ...)",
    401: "Missing or invalid API key",
    403: "Not allowed for this key",
    404: "No such resource, or not the caller's",
    408: "The body did not arrive within connections.body_timeout_s",
    409: "Conflict",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Body does not match the schema",
    429: "Rate limit, quota or queue bound reached; see Retry-After",
    503: "No GPU can ever serve it (code incompatible, no Retry-After), none can now, the "
    "journal cannot be written, or the service is not ready",
}


def _ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF.format(model=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ok(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data", "error", "meta"],
        "additionalProperties": False,
        "properties": {
            "status": {"const": "success"},
            "data": data,
            "error": {"type": "null"},
            "meta": _nullable(_ref("Meta")),
        },
    }


def _err(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data", "error", "meta"],
        "additionalProperties": False,
        "properties": {
            "status": {"const": "error"},
            "data": _nullable(data) if data else {"type": "null"},
            "error": _ref("ErrorInfo"),
            "meta": _nullable(_ref("Meta")),
        },
    }


def _json(schema: dict[str, Any], description: str, headers: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        out["headers"] = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
    return out


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    errors: list[int],
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
    error_data: dict[int, dict[str, Any]] | None = None,
    ok_status: int = 200,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ok is not None:
        responses[str(ok_status)] = _json(_ok(ok), "Success")
    for code in errors:
        data = (error_data or {}).get(code)
        responses[str(code)] = _json(_err(data), _ERRORS[code], headers=code in (429, 503))
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if not secured:
        op["security"] = []
    return op


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": s.ID_PATTERN},
    }


def openapi_document(version: str = "1.0") -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        s.RouteRequest,
        s.MaintenanceIn,
        s.RestartIn,
        s.AdminCancelIn,
        s.QuotaUpdateIn,
        s.RouteAnswer,
        s.RequestStatusOut,
        s.ResultOut,
        s.CancelOut,
        s.GpuStatusOut,
        s.QuotaOut,
        s.MetricsOut,
        s.AdminAnswer,
        s.HealthOut,
        s.ErrorInfo,
        s.Meta,
    ]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    components = top.get("$defs", {})
    rid = _path("request_id", "the request's id (request ids are unique per user)")
    # callers acting for every user (admin, trusted network) name the user; without it,
    # the last submitted request with that id
    owner = {
        "name": "user_id",
        "in": "query",
        "required": False,
        "description": "whose request (admin and trusted-network callers only; a user key "
        "always reads its own)",
        "schema": {"type": "string", "pattern": s.ID_PATTERN},
    }
    gid = _path("gpu_id", "the GPU's id")
    uid = _path("user_id", "the user's id")
    common = [400, 401, 404]
    rejected = {c: _ref(s.RouteAnswer) for c in (409, 422, 429, 503)}
    status_op = _op(
        "Status of a request",
        _ref(s.RequestStatusOut),
        [401, 404, 503],
        tag="requests",
        params=[rid, owner],
    )
    gpus_op = _op("The GPU fleet", _ref(s.GpuStatusOut), [401, 503], tag="gpus")
    paths: dict[str, Any] = {
        "/api/v1/route": {
            "post": _op(
                "Submit a request",
                _ref(s.RouteAnswer),
                [400, 401, 403, 408, 409, 413, 415, 422, 429, 503],
                tag="requests",
                body=s.RouteRequest,
                error_data=rejected,
            )
        },
        "/api/v1/route/{request_id}": {"get": status_op},
        "/api/v1/requests/{request_id}": {
            "get": status_op,
            "delete": _op(
                "Cancel one's own request",
                _ref(s.CancelOut),
                [401, 404, 503],
                tag="requests",
                params=[rid, owner],
            ),
        },
        "/api/v1/requests/{request_id}/result": {
            "get": _op(
                "The result of a completed request (result_url)",
                _ref(s.ResultOut),
                [401, 404, 409, 503],
                tag="requests",
                params=[rid, owner],
            )
        },
        "/api/v1/gpu/status": {"get": gpus_op},
        "/api/v1/gpus": {"get": gpus_op},
        "/api/v1/user/{user_id}/quota": {
            "get": _op(
                "Quotas and rate limits of a user",
                _ref(s.QuotaOut),
                [401, 403, 404, 503],
                tag="users",
                params=[uid],
            )
        },
        "/api/v1/metrics": {
            "get": _op("Metrics (seed JSON)", _ref(s.MetricsOut), [401, 503], tag="metrics")
        },
        "/api/v1/admin/gpu/{gpu_id}/maintenance": {
            "post": _op(
                "Put a GPU in maintenance",
                _ref(s.AdminAnswer),
                [*common, 403, 413, 415, 422, 503],
                tag="admin",
                body=s.MaintenanceIn,
                body_required=False,
                params=[gid],
            )
        },
        "/api/v1/admin/gpu/{gpu_id}/restart": {
            "post": _op(
                "Restart a GPU",
                _ref(s.AdminAnswer),
                [*common, 403, 409, 413, 415, 422, 503],
                tag="admin",
                body=s.RestartIn,
                body_required=False,
                params=[gid],
            )
        },
        "/api/v1/admin/request/{request_id}": {
            "delete": _op(
                "Cancel any request",
                _ref(s.CancelOut),
                [*common, 403, 413, 415, 422, 503],
                tag="admin",
                body=s.AdminCancelIn,
                body_required=False,
                params=[rid, owner],
            )
        },
        "/api/v1/admin/user/{user_id}/quota": {
            "put": _op(
                "Change a user's quota",
                _ref(s.QuotaOut),
                [*common, 403, 413, 415, 422, 503],
                tag="admin",
                body=s.QuotaUpdateIn,
                params=[uid],
            )
        },
        "/health": {
            "get": _op(
                "Liveness and readiness (503 when not ready)",
                _ref(s.HealthOut),
                [503],
                tag="ops",
                secured=False,
                error_data={503: _ref(s.HealthOut)},
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "tags": ["ops"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GPU Request Router",
            "version": version,
            "description": "Routes GPU compute requests by priority, quota and GPU "
            "state. Answers use the ALT_LAS envelope.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
