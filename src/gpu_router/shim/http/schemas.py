"""Request and response models of the API (seed 001 section 6.3, DESIGN 5.1).

Input models are strict: unknown fields are refused, numbers are not coerced from strings,
booleans are not integers, every number has a range. Output models document the answers
in /openapi.json; the handlers build plain dicts of the same shape (tests check the two
agree).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
"""request, user and GPU ids: 1-128 characters, letters, digits and ``._:@-`` (a UUID fits)."""

MODEL_PATTERN = r"^[^\x00-\x1f\x7f]{1,256}$"
MAX_DURATION_MS = 30 * 86_400_000
REQUEST_TYPES = ("inference", "training", "fine-tuning", "embedding", "batch")


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``5.0``) as the integer it is: JSON Schema's
    ``integer`` (the OpenAPI document) admits it, so the API does too; ``5.5`` stays a
    float and is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
"""An integer field of a request body: ``5`` or ``5.0`` (see :func:`_integral`)."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- input


class ResourceRequirementsIn(_In):
    memory: Annotated[JsonInt, Field(ge=0, le=10_000_000, description="MB")] = 0
    compute_units: Annotated[JsonInt, Field(ge=1, le=1_000_000)] = 1
    max_batch_size: Annotated[JsonInt, Field(ge=1, le=1_000_000)] = 1
    expected_duration: Annotated[JsonInt, Field(ge=0, le=MAX_DURATION_MS, description="ms")] = 0
    min_compute_capability: Annotated[str | None, Field(pattern=r"^[0-9]{1,2}\.[0-9]{1,2}$")] = None


def http_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host, else ValueError."""
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must be an absolute http or https URL")
    return value


class RouteRequest(_In):
    """POST /api/v1/route (seed 6.3.1). ``request_id`` is generated when absent."""

    request_id: Annotated[str | None, Field(pattern=ID_PATTERN)] = None
    user_id: Annotated[str, Field(pattern=ID_PATTERN)]
    model_id: Annotated[str, Field(pattern=MODEL_PATTERN)]
    priority: Annotated[JsonInt, Field(ge=1, le=5, description="1-5, 5 highest")]
    type: Literal["inference", "training", "fine-tuning", "embedding", "batch"] = "inference"
    resource_requirements: ResourceRequirementsIn = ResourceRequirementsIn()
    timeout: Annotated[JsonInt | None, Field(ge=1, le=MAX_DURATION_MS, description="ms")] = None
    callback_url: Annotated[str | None, Field(max_length=2048)] = None
    payload: dict[str, Any] | None = None

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)


class MaintenanceIn(_In):
    reason: Annotated[str, Field(max_length=1024)] = ""
    estimated_duration: Annotated[
        JsonInt | None, Field(ge=0, le=525_600, description="minutes")
    ] = None


class RestartIn(_In):
    force: bool = False


class WorkerRegisterIn(_In):
    """A worker joining the fleet: its GPU and where its job API listens."""

    gpu_id: Annotated[str, Field(pattern=ID_PATTERN)]
    url: Annotated[str, Field(max_length=2048, description="the worker's job API (http/https)")]
    name: Annotated[str, Field(max_length=256)] = ""
    memory_total_mb: Annotated[float, Field(gt=0, le=1e9)]
    compute_capability: Annotated[str, Field(pattern=r"^[0-9]{1,2}\.[0-9]{1,2}$")] = "8.0"
    slots: Annotated[int, Field(ge=1, le=4096)] = 1
    speed: Annotated[float, Field(gt=0, le=1000)] = 1.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)


class WorkerAnswer(_Out):
    gpu_id: str
    status: Literal["active", "inactive", "maintenance", "error"]
    heartbeat_interval: Annotated[float | None, Field(description="seconds")] = None
    heartbeat_timeout: Annotated[float | None, Field(description="seconds")] = None


class HeartbeatIn(_In):
    """A registered worker's readings (all optional)."""

    memory_used_mb: Annotated[float, Field(ge=0, le=1e9)] = 0.0
    utilization_pct: Annotated[float, Field(ge=0, le=100)] = 0.0
    temperature_c: Annotated[float, Field(ge=0, le=200)] = 0.0
    models: Annotated[
        list[Annotated[str, Field(max_length=256)]] | None,
        Field(max_length=10_000, description="model ids held, least recently used first"),
    ] = None


class AdminCancelIn(_In):
    reason: Annotated[str, Field(max_length=1024)] = ""


class QuotaUpdateIn(_In):
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    gpu_time_limit: Annotated[JsonInt | None, Field(ge=0, le=10_000_000, description="minutes")] = (
        None
    )
    concurrent_requests_limit: Annotated[JsonInt | None, Field(ge=0, le=1_000_000)] = None
    priority_requests_limit: Annotated[JsonInt | None, Field(ge=0, le=1_000_000)] = None
    requests_per_minute_limit: Annotated[JsonInt | None, Field(ge=0, le=10_000_000)] = None
    requests_per_day_limit: Annotated[JsonInt | None, Field(ge=0, le=1_000_000_000)] = None


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    """One ``{"field", "reason"}`` per problem, with dotted field paths; values are not
    echoed (they may be huge or hostile)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(p) for p in err["loc"]) or "body"
        reason = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        out.append({"field": field, "reason": reason})
    return out


# --------------------------------------------------------------------------- output


class RouteAnswer(_Out):
    request_id: str
    status: Literal["accepted", "queued", "rejected"]
    assigned_gpu: str | None = None
    estimated_start_time: str | None = None
    estimated_completion_time: str | None = None
    queue_position: int | None = None
    message: str


class RequestStatusOut(_Out):
    request_id: str
    user_id: str
    model_id: str
    priority: int
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    assigned_gpu: str | None = None
    submitted_time: str
    start_time: str | None = None
    completion_time: str | None = None
    duration: Annotated[int | None, Field(description="ms")] = None
    progress: Annotated[float, Field(ge=0, le=1)]
    retries: int
    result_url: str | None = None
    error: str | None = None
    rerouted_from: Annotated[
        list[str],
        Field(description="GPUs earlier attempts ran on (while this router holds the request)"),
    ] = []


class ResultOut(_Out):
    request_id: str
    status: Literal["completed"]
    result: Any = None


class CancelOut(_Out):
    request_id: str
    status: Literal["queued", "processing", "completed", "failed", "cancelled"]
    cancelled: bool
    message: str


class MemoryOut(_Out):
    total: int
    used: int
    free: int


class UtilizationOut(_Out):
    gpu: float
    memory: float


class PowerOut(_Out):
    usage: float
    limit: float


class GpuOut(_Out):
    gpu_id: str
    name: str
    compute_capability: str
    status: Literal["active", "inactive", "maintenance", "error"]
    memory: MemoryOut
    utilization: UtilizationOut
    temperature: float
    power: PowerOut
    performance_index: float
    error_rate: float
    active_requests: int
    queued_requests: int
    resident_models: Annotated[
        list[str],
        Field(description="models held or loading, least recently used first (locality on)"),
    ] = []
    uptime: Annotated[int, Field(description="seconds")]
    health_status: Literal["healthy", "warning", "critical"]


class GpuStatusOut(_Out):
    timestamp: str
    gpus: list[GpuOut]


class QuotaItem(_Out):
    limit: int
    used: int
    remaining: int


class RateItem(_Out):
    limit: int
    used: int
    remaining: int
    reset_time: str


class QuotasOut(_Out):
    gpu_time: QuotaItem
    concurrent_requests: QuotaItem
    priority_requests: QuotaItem


class RateLimitsOut(_Out):
    requests_per_minute: RateItem
    requests_per_day: RateItem


class QuotaOut(_Out):
    user_id: str
    quotas: QuotasOut
    rate_limits: RateLimitsOut


class SystemMetrics(_Out):
    total_gpus: int
    active_gpus: int
    total_requests: int
    active_requests: int
    queued_requests: int
    completed_requests: int
    failed_requests: int
    average_response_time: float
    p95_response_time: float
    p99_response_time: float
    success_rate: float


class GpuMetrics(_Out):
    memory_utilization: float
    compute_utilization: float
    temperature: float
    power_usage: float
    active_requests: int
    queued_requests: int
    average_response_time: float
    throughput: float


class ModelMetrics(_Out):
    total_requests: int
    active_requests: int
    average_response_time: float
    average_memory_usage: float
    success_rate: float


class UserMetrics(_Out):
    total_requests: int
    active_requests: int
    gpu_time_used: float
    average_response_time: float


class LocalityMetrics(_Out):
    cold_starts: Annotated[int, Field(description="placements that loaded their model")]
    warm_starts: Annotated[int, Field(description="placements that found it resident")]
    memory_used_mb: Annotated[float, Field(description="model weights resident, MB")]


class MetricsOut(_Out):
    timestamp: str
    system: SystemMetrics
    gpus: dict[str, GpuMetrics]
    models: dict[str, ModelMetrics]
    users: dict[str, UserMetrics]
    locality: Annotated[
        LocalityMetrics | None, Field(description="model locality (null when it is off)")
    ] = None


class AdminAnswer(_Out):
    target: str
    action: Literal["maintenance", "restart", "cancel", "quota"]
    status: str
    message: str


class HealthOut(_Out):
    status: Literal["healthy", "unhealthy"]
    live: bool
    ready: bool
    version: str
    gpus_total: int
    gpus_active: int
    queued_requests: int
    active_requests: int
    uptime: Annotated[float, Field(description="seconds")]
    reason: str | None = None
    gpus_overheated: Annotated[
        list[str], Field(description="GPUs above gpu_monitoring.max_temperature: no new work")
    ] = []
    # with the leader lease (journal.lease_ttl_s): this replica's role, the leader's
    # address, the lease's epoch
    role: Literal["leader", "starting", "standby"] | None = None
    leader: str | None = None
    epoch: int | None = None


class ErrorDetail(_Out):
    field: str
    reason: str


class ErrorInfo(_Out):
    code: str
    message: str
    details: list[ErrorDetail] | None = None
    retry_after: Annotated[float | None, Field(description="seconds")] = None


class ProcessingTime(_Out):
    total_ms: float
    components: dict[str, float] | None = None


class GpuResources(_Out):
    device_id: str | None = None
    device_name: str | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    utilization_percent: float | None = None
    temperature_c: float | None = None


class Meta(_Out):
    request_id: str
    timestamp: str
    processing_time: ProcessingTime | None = None
    gpu_resources: GpuResources | None = None
    trace_id: str | None = None
    version: str
