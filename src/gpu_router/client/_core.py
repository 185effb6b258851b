"""What the sync and async clients share: the calls (method, path, body, how to read the
answer), the envelope decoder and the retry rules.

Retry rules (:class:`RetryPolicy`):

* a 429 or 503 that carries a retry time (the error's ``retry_after``, else the
  ``Retry-After`` header) is retried after that time, at most ``max_retries`` times and
  only while the time is at most ``max_retry_after_s``; a 503 without one (``incompatible``:
  no GPU could ever serve it) is raised at once;
* a transport error (refused, reset, timed out) is retried ``transport_retries`` times
  with exponential backoff. A submission is re-sent with the same body, so the same
  ``request_id``: the router answers a repeat with the original answer, so a submission
  whose answer was lost is not made twice. Every other call is safe to repeat: reads,
  cancels (idempotent), maintenance, a quota set to the same values, and a restart (a
  second one finds nothing left to re-queue).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from gpu_router.client.errors import ApiError, RouterError, TransportError, error_class
from gpu_router.client.models import (
    QUOTA_FIELDS,
    AdminResult,
    CancelResult,
    GpuList,
    Health,
    Metrics,
    Quota,
    RequestResult,
    RequestStatus,
    RouteResult,
    parse,
)

NO_BODY: Any = object()
RetryHook = Callable[[int, float, RouterError], None]
"""``on_retry(attempt, delay_s, error)``: called before each retry's wait."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # retries of a 429/503 that says when to retry
    max_retry_after_s: float = 30.0  # a longer Retry-After is raised, not waited for
    transport_retries: int = 2  # retries after a transport error
    backoff_s: float = 0.2  # first wait after a transport error; doubles each time
    max_backoff_s: float = 5.0
    margin_s: float = 0.05  # added to every Retry-After wait (clock skew)

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_retries=0, transport_retries=0)


@dataclass
class Attempts:
    """The retry state of one call: each failure answers the wait before the next try,
    or raises."""

    policy: RetryPolicy
    on_retry: RetryHook | None = None
    api: int = 0
    transport: int = 0

    def after_transport_error(self, exc: httpx.TransportError, call: Call) -> float:
        err = TransportError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}")
        if self.transport >= self.policy.transport_retries:
            raise err from exc
        delay = min(self.policy.max_backoff_s, self.policy.backoff_s * 2.0**self.transport)
        self.transport += 1
        self._notify(self.transport + self.api, delay, err)
        return delay

    def after_api_error(self, err: ApiError) -> float:
        wait = err.retry_after
        if (
            err.status not in (429, 503)
            or wait is None
            or not math.isfinite(wait)
            or wait > self.policy.max_retry_after_s
            or self.api >= self.policy.max_retries
        ):
            raise err
        delay = max(0.0, wait) + self.policy.margin_s
        self.api += 1
        self._notify(self.transport + self.api, delay, err)
        return delay

    def _notify(self, attempt: int, delay: float, err: RouterError) -> None:
        if self.on_retry is not None:
            self.on_retry(attempt, delay, err)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    read: Callable[[Any], Any]
    body: Any = NO_BODY
    accept_error: Callable[[ApiError], bool] | None = field(default=None)  # answer anyway

    def request_kwargs(self) -> dict[str, Any]:
        return {} if self.body is NO_BODY else {"json": self.body}


def _retry_after(resp: httpx.Response, error: dict[str, Any]) -> float | None:
    value = error.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    header = resp.headers.get("retry-after")
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def decode(resp: httpx.Response) -> Any:
    """The ``data`` of a success envelope, or the :class:`ApiError` of any other answer."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or "status" not in body:
        text = resp.text[:200].strip() or resp.reason_phrase
        if resp.is_success:
            raise ApiError(f"not an ALT_LAS envelope: {text}", status=resp.status_code)
        cls = error_class(resp.status_code)
        raise cls(text, status=resp.status_code, retry_after=_retry_after(resp, {}))
    if body.get("status") == "success" and resp.is_success:
        return body.get("data")
    raw_error = body.get("error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    cls = error_class(resp.status_code)
    raise cls(
        str(error.get("message") or resp.reason_phrase),
        status=resp.status_code,
        code=error.get("code"),
        retry_after=_retry_after(resp, error),
        details=error.get("details"),
        data=body.get("data"),
    )


def _id(value: str) -> str:
    return quote(str(value), safe="")


def _health_anyway(err: ApiError) -> bool:
    return err.status == 503 and isinstance(err.data, dict) and "ready" in err.data


# --------------------------------------------------------------------------- the calls
def route_call(
    user_id: str,
    model_id: str,
    priority: int,
    *,
    request_id: str | None = None,
    type: str = "inference",
    resource_requirements: dict[str, Any] | None = None,
    timeout_ms: int | None = None,
    callback_url: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Call:
    body: dict[str, Any] = {
        "request_id": request_id or str(uuid.uuid4()),
        "user_id": user_id,
        "model_id": model_id,
        "priority": priority,
        "type": type,
    }
    extra = {
        "resource_requirements": resource_requirements,
        "timeout": timeout_ms,
        "callback_url": callback_url,
        "payload": payload,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return Call("POST", "/api/v1/route", lambda d: parse(RouteResult, d), body)


def _owner(user_id: str | None) -> str:
    """``?user_id=`` for a caller acting for every user (request ids are per user);
    a user key always reads its own, and None asks for the last submitted one."""
    return "" if user_id is None else f"?user_id={_id(user_id)}"


def status_call(request_id: str, user_id: str | None = None) -> Call:
    path = f"/api/v1/requests/{_id(request_id)}{_owner(user_id)}"
    return Call("GET", path, lambda d: parse(RequestStatus, d))


def result_call(request_id: str, user_id: str | None = None) -> Call:
    path = f"/api/v1/requests/{_id(request_id)}/result{_owner(user_id)}"
    return Call("GET", path, lambda d: parse(RequestResult, d))


def cancel_call(request_id: str, user_id: str | None = None) -> Call:
    path = f"/api/v1/requests/{_id(request_id)}{_owner(user_id)}"
    return Call("DELETE", path, lambda d: parse(CancelResult, d))


def quota_call(user_id: str) -> Call:
    return Call("GET", f"/api/v1/user/{_id(user_id)}/quota", lambda d: parse(Quota, d))


def gpus_call() -> Call:
    return Call("GET", "/api/v1/gpus", GpuList.from_data)


def metrics_call() -> Call:
    return Call("GET", "/api/v1/metrics", lambda d: parse(Metrics, d))


def health_call() -> Call:
    return Call("GET", "/health", lambda d: parse(Health, d), accept_error=_health_anyway)


def maintenance_call(gpu_id: str, reason: str = "", minutes: int | None = None) -> Call:
    body: dict[str, Any] = {"reason": reason}
    if minutes is not None:
        body["estimated_duration"] = minutes
    path = f"/api/v1/admin/gpu/{_id(gpu_id)}/maintenance"
    return Call("POST", path, lambda d: parse(AdminResult, d), body)


def restart_call(gpu_id: str, force: bool = False) -> Call:
    path = f"/api/v1/admin/gpu/{_id(gpu_id)}/restart"
    return Call("POST", path, lambda d: parse(AdminResult, d), {"force": force})


def admin_cancel_call(request_id: str, reason: str = "", user_id: str | None = None) -> Call:
    path = f"/api/v1/admin/request/{_id(request_id)}{_owner(user_id)}"
    return Call("DELETE", path, lambda d: parse(CancelResult, d), {"reason": reason})


def set_quota_call(user_id: str, limits: dict[str, int | None]) -> Call:
    unknown = set(limits) - set(QUOTA_FIELDS)
    if unknown:
        raise TypeError(f"unknown quota limit(s) {sorted(unknown)}; known: {sorted(QUOTA_FIELDS)}")
    body = {QUOTA_FIELDS[k]: v for k, v in limits.items() if v is not None}
    if not body:
        raise ValueError("give at least one limit")
    path = f"/api/v1/admin/user/{_id(user_id)}/quota"
    return Call("PUT", path, lambda d: parse(Quota, d), body)


def headers(key: str | None) -> dict[str, str]:
    out = {"user-agent": "gpu-router-client"}
    if key:
        out["authorization"] = f"Bearer {key}"
    return out
