"""The sections of `config.yaml`: the deployment guide's keys (seed 003, 4.1), the
`api_metadata` block (seed 004, 3.5) and our own. Every section forbids unknown keys, so a
typo is an error rather than a silent default.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


class ConfigSection(BaseModel):
    """A frozen section that refuses unknown keys and validates its defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ApiSection(ConfigSection):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    debug: bool = False
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 1_048_576
    public_url: str | None = None  # base of result_url; default http://host:port
    max_json_depth: Annotated[int, Field(ge=2, le=200)] = 32
    # reverse proxies whose X-Forwarded-For/-Proto are believed (the client address that
    # trusted_networks checks); empty: none, the peer address is the client's
    forwarded_allow_ips: list[str] = Field(default_factory=list)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value


class GpuMonitoringSection(ConfigSection):
    source: Literal["virtual", "nvml", "monitoring"] = "virtual"
    url: str = "http://gpu-monitoring-service:8080"
    update_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0  # seconds between samples
    health_check_interval: Annotated[float, Field(gt=0, le=86400)] = 60.0
    max_temperature: Annotated[float, Field(gt=0, le=150)] = 85.0
    virtual_gpus: Annotated[int, Field(ge=1, le=10_000)] = 4
    worker_urls: dict[str, str] = Field(default_factory=dict)  # gpu_id -> worker base URL
    worker_base_port: Annotated[int | None, Field(ge=1, le=65535)] = None  # NVML: GPU i at base + i
    worker_host: str = "127.0.0.1"
    #: NVML: seconds between re-scans of the devices (GPUs join and leave); None: never
    rescan_interval: Annotated[float | None, Field(gt=0, le=86400)] = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("worker_urls")
    @classmethod
    def _worker_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for gpu_id, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"worker URL of {gpu_id} must be an http(s) URL (got {url!r})")
        return value


class LoadBalancerSection(ConfigSection):
    """``strategy``: a policy strategy name (``hybrid`` is the seed's hybrid-seed); None
    is the policy's default. ``weights`` go to the hybrid strategies, ``d`` to power-of-d."""

    strategy: str | None = None
    weights: dict[str, float] | None = None
    d: Annotated[int, Field(ge=1, le=64)] = 2

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        allowed = {"usage", "priority", "type", "performance", "health"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unknown weight(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if any(not (0.0 <= w <= 1.0) for w in value.values()):
            raise ValueError("every weight must be between 0 and 1")
        return value


class RequestRouterSection(ConfigSection):
    """Calls to workers: ``max_retries`` more tries of a failed call (connection refused,
    timeout, 5xx) ``retry_delay`` s apart before the worker is declared down;
    ``request_timeout`` s per call."""

    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    retry_delay: Annotated[float, Field(ge=0, le=3600)] = 1.0
    request_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0


class ErrorHandlerSection(ConfigSection):
    """Failover: a request whose worker fails is re-queued up to ``max_retries`` times with
    backoff ``retry_delay * 2**(n-1)``; ``consecutive_failures`` failures on one GPU eject
    it for ``base_ejection_s`` growing up to ``gpu_cooldown_period``; a GPU taken out by a
    hard signal (Xid, ECC, crash) stays out at least ``gpu_cooldown_period``; a sampled
    error rate above ``error_threshold`` takes a GPU out."""

    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    retry_delay: Annotated[float, Field(ge=0, le=3600)] = 1.0
    error_threshold: Annotated[float, Field(ge=0, le=1)] = 0.1
    gpu_cooldown_period: Annotated[float, Field(gt=0, le=86400)] = 300.0
    consecutive_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    base_ejection_s: Annotated[float, Field(gt=0, le=86400)] = 30.0
    max_ejected_share: Annotated[float, Field(ge=0, le=1)] = 0.5

    @model_validator(mode="after")
    def _cooldown(self) -> ErrorHandlerSection:
        if self.gpu_cooldown_period < self.base_ejection_s:
            raise ValueError("gpu_cooldown_period must be >= base_ejection_s")
        return self


class UserQuotaSection(ConfigSection):
    """The guide's keys as the policy reads them (policy/quota.py): ``default_gpu_limit``
    GPUs' worth of time per day (GPU-minutes = limit * 1440 unless ``gpu_minutes`` is set),
    ``default_request_limit`` concurrent requests (queued + running),
    ``default_priority_limit`` concurrent requests of priority >= 4."""

    default_gpu_limit: Annotated[float, Field(gt=0, le=1_000_000)] = 2
    default_request_limit: Annotated[int, Field(ge=0, le=1_000_000)] = 100
    default_priority_limit: Annotated[int, Field(ge=0, le=1_000_000)] = 3
    quota_check_interval: Annotated[float, Field(gt=0, le=86400)] = 60.0
    requests_per_minute: Annotated[int, Field(ge=0, le=100_000_000)] = 600
    requests_per_day: Annotated[int, Field(ge=0, le=1_000_000_000)] = 100_000
    gpu_minutes: Annotated[float | None, Field(ge=0, le=1e12)] = None  # per gpu_minutes_period_s
    gpu_minutes_period_s: Annotated[float, Field(gt=0, le=1e9)] = 86_400.0


def per_priority(value: dict[int, float]) -> dict[int, float]:
    """A priority -> positive number table (priorities 1-5), as given."""
    for p, w in value.items():
        if not 1 <= p <= 5:
            raise ValueError(f"priority {p} is not between 1 and 5")
        if not w > 0:
            raise ValueError(f"value of priority {p} must be > 0")
    return value


class QueueSection(ConfigSection):
    max_length: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    max_wait_s: dict[int, float] = Field(default_factory=dict)  # priority -> aging bound
    admission_share: dict[int, float] = Field(default_factory=dict)  # priority -> share
    fair_share: bool = True
    default_timeout_ms: Annotated[int | None, Field(gt=0, le=30 * 86_400_000)] = None
    #: timeouts of requests that give none, per type and per priority (ms; the shorter
    #: applies when both do); timeout_retries: re-runs of a request that timed out running
    timeout_by_type_ms: dict[str, Annotated[int, Field(gt=0, le=30 * 86_400_000)]] = Field(
        default_factory=dict
    )
    timeout_by_priority_ms: dict[int, Annotated[int, Field(gt=0, le=30 * 86_400_000)]] = Field(
        default_factory=dict
    )
    timeout_retries: Annotated[int, Field(ge=0, le=100)] = 0
    binding: Literal["late", "early"] = "late"

    @field_validator("max_wait_s", "admission_share", "timeout_by_priority_ms")
    @classmethod
    def _priorities(cls, value: dict[int, float]) -> dict[int, float]:
        return per_priority(value)


class SlaSection(ConfigSection):
    """``wait_target_s``: the SLA wait per priority (s; missing priorities take the
    policy's defaults 5:2 4:5 3:10 2:30 1:60). ``admit_by_wait`` refuses (429 with
    Retry-After) a request whose predicted wait exceeds ``admission_wait_s`` of its
    priority (default: ``wait_target_s``); ``admission_rate_window_s`` is how far back
    the work admitted at higher priorities is measured."""

    wait_target_s: dict[int, float] = Field(default_factory=dict)
    admit_by_wait: bool = True
    admission_wait_s: dict[int, float] = Field(default_factory=dict)
    admission_rate_window_s: Annotated[float, Field(gt=0, le=86400)] = 10.0

    @field_validator("wait_target_s", "admission_wait_s")
    @classmethod
    def _priorities(cls, value: dict[int, float]) -> dict[int, float]:
        return per_priority(value)


class ApiKey(ConfigSection):
    key: Annotated[str | None, Field(min_length=16, max_length=512)] = None
    key_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    user_id: Annotated[str, Field(pattern=_ID_PATTERN)]
    role: Literal["user", "service", "admin"] = "user"

    @model_validator(mode="after")
    def _one_key(self) -> ApiKey:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of key or key_sha256")
        return self


class TrustedNetwork(ConfigSection):
    cidr: str
    user_id: Annotated[str, Field(pattern=_ID_PATTERN)] = "orchestrator"
    role: Literal["user", "service", "admin"] = "service"

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        ipaddress.ip_network(value, strict=False)  # ValueError names the bad network
        return value


class AuthSection(ConfigSection):
    keys: list[ApiKey] = Field(default_factory=list)
    # a YAML file of more keys ({keys: [...]}, written by `gpu-router keys create`), read
    # at start with the inline ones (shim/keys.py); relative to the working directory
    keys_file: str | None = None
    trusted_networks: list[TrustedNetwork] = Field(default_factory=list)


class JournalSection(ConfigSection):
    # the store: a SQLite journal file (":memory:" keeps nothing across restarts), or a
    # PostgreSQL URL (postgresql://user@host:port/dbname; libpq's PG* variables and
    # ~/.pgpass apply), for which only commit_delay_ms, lazy_commit_ms and max_batch apply
    path: str = "gpu-router-journal.sqlite3"
    wal: bool = True
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    # group commit (shim.store.group_commit): new requests are handed to the
    # writer commit_delay_ms after the first of a batch (0: at once; the writer batches
    # whatever arrives while it commits); later state changes are handed over at most
    # lazy_commit_ms later (or with the next new request)
    commit_delay_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    # where the commits run: "process" (a child process: its SQLite calls never wait for
    # this process's GIL) or "loop" (on the event loop); a ":memory:" journal, or one
    # without WAL, always commits on the loop. "thread" (a writer thread, removed) is
    # read as "loop"
    writer: Literal["process", "loop", "thread"] = "process"
    # with a writer process and synchronous NORMAL or OFF: a new request is made durable
    # by one append to the intake log (shim.store.intake_log) and answered at once, not after
    # the writer process's commit (false: after the commit); its row is then handed to
    # the writer like a state change (lazy_commit_ms), and commit_delay_ms does not apply
    intake_log: bool = True
    # where the intake log goes: "" is the journal's directory; /dev/shm (no write there
    # waits for the disk) only where the service restarts without losing it (not a
    # container whose main process is the service)
    intake_dir: str = ""
    lazy_commit_ms: Annotated[float, Field(ge=0, le=60_000)] = 20.0
    max_batch: Annotated[int, Field(ge=1, le=100_000)] = 256
    # PostgreSQL only: above 0, several routers share the store and one leads, holding a
    # lease of this many seconds in the database (shim.http.leadership); 0: one router
    lease_ttl_s: Annotated[float, Field(ge=0, le=600)] = 0.0
    # with a lease: a standby answers status and result reads from the store and
    # forwards every other API call to the leader (shim.http.standby), waiting at most
    # forward_timeout_s for the leader's answer (then 503 with Retry-After)
    forward_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    # a standby's /health: false answers 503 (a load balancer that checks /health sends
    # clients to the leader only); true answers 200 (every replica takes clients)
    standby_ready: bool = False
    # a standby's warm copy (shim.store.pg_warm_copy): it reads what changed in the store
    # every warm_poll_ms, keeps the warm_copy_rows rows changed last, and answers status
    # and result reads from it while PostgreSQL cannot be reached (0 rows: no copy)
    warm_poll_ms: Annotated[float, Field(ge=10, le=60_000)] = 200.0
    warm_copy_rows: Annotated[int, Field(ge=0, le=10_000_000)] = 100_000


class DispatchSection(ConfigSection):
    # first poll; grows to 10% of run time
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 0.05
    max_poll_interval: Annotated[float, Field(gt=0, le=600)] = 1.0
    health_probe_interval: Annotated[float, Field(gt=0, le=3600)] = 1.0
    callback_retries: Annotated[int, Field(ge=0, le=100)] = 5
    callback_backoff: Annotated[float, Field(ge=0, le=3600)] = 0.5
    callback_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    # finished jobs are acknowledged to their workers (who then forget them) in batches this
    # often (s), once the store has their terminal state durably
    ack_interval: Annotated[float, Field(gt=0, le=3600)] = 0.5


class ProcessingTimeComponent(ConfigSection):
    enabled: bool = True
    include_components: bool = True


class GpuResourcesComponent(ConfigSection):
    enabled: bool = True
    include_temperature: bool = True
    include_utilization: bool = True


class TracingComponent(ConfigSection):
    enabled: bool = True
    propagate_headers: bool = True


class MetadataComponents(ConfigSection):
    processing_time: ProcessingTimeComponent = ProcessingTimeComponent()
    gpu_resources: GpuResourcesComponent = GpuResourcesComponent()
    tracing: TracingComponent = TracingComponent()


class ApiMetadataSection(ConfigSection):
    """Seed 004, section 3.5."""

    enabled: bool = True
    include_in_response: bool = True
    detail_level: Literal["minimal", "standard", "full"] = "full"
    sampling_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    version: str = "1.0"
    components: MetadataComponents = MetadataComponents()
