"""The whole service configuration and how it is read: `config.yaml`, overridden by the
deployment guide's environment variables (seed 003, 4.2). Invalid configuration refuses to
start, naming the key and why.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError

from .callbacks import CallbacksSection
from .connections import ConnectionsSection
from .errors import ConfigError
from .model_locality import ModelLocalitySection
from .sections import (
    ApiMetadataSection,
    ApiSection,
    AuthSection,
    ConfigSection,
    DispatchSection,
    ErrorHandlerSection,
    GpuMonitoringSection,
    JournalSection,
    LoadBalancerSection,
    LoggingSection,
    QueueSection,
    RequestRouterSection,
    UserQuotaSection,
)
from .worker_auth import WorkerAuthSection

ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "GPU_MONITORING_URL": ("gpu_monitoring", "url"),
    "LOGGING_URL": ("logging", "url"),
    "API_HOST": ("api", "host"),
    "API_PORT": ("api", "port"),
    "API_DEBUG": ("api", "debug"),
}
"""Environment variable -> config key it overrides (CONFIG_PATH names the file itself)."""


class ServiceConfig(ConfigSection):
    api: ApiSection = ApiSection()
    connections: ConnectionsSection = ConnectionsSection()
    gpu_monitoring: GpuMonitoringSection = GpuMonitoringSection()
    load_balancer: LoadBalancerSection = LoadBalancerSection()
    request_router: RequestRouterSection = RequestRouterSection()
    error_handler: ErrorHandlerSection = ErrorHandlerSection()
    user_quota_manager: UserQuotaSection = UserQuotaSection()
    queue: QueueSection = QueueSection()
    auth: AuthSection = AuthSection()
    journal: JournalSection = JournalSection()
    dispatch: DispatchSection = DispatchSection()
    logging: LoggingSection = LoggingSection()
    api_metadata: ApiMetadataSection = ApiMetadataSection()
    model_locality: ModelLocalitySection = ModelLocalitySection()
    worker_auth: WorkerAuthSection = WorkerAuthSection()
    callbacks: CallbacksSection = CallbacksSection()
    seed: Annotated[int, Field(ge=0)] = 0  # seeds the router's random generator


def _first_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in (*prefix, *err["loc"])]
    key = ".".join(loc) or "<root>"
    reason = err["msg"]
    if err["type"] == "extra_forbidden":
        reason = "unknown key"
    elif "input" in err and err["type"] != "missing":
        reason = f"{reason} (got {err['input']!r})"
    return ConfigError(key, reason)


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for var, (section, key) in ENV_OVERRIDES.items():
        if var in env:
            target = merged.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(section, "must be a mapping")
            target[key] = env[var]
    return merged


def config_from_mapping(
    raw: Mapping[str, Any] | None, env: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Validate a parsed config mapping, with environment overrides applied first."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("<root>", f"must be a mapping, got {type(raw).__name__}")
    merged = _apply_env(dict(raw), env or {})
    try:
        return ServiceConfig.model_validate(merged)
    except ValidationError as exc:
        raise _first_error(exc) from None


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Read ``path`` (else $CONFIG_PATH, else ./config.yaml when it exists, else defaults)."""
    env = os.environ if env is None else env
    explicit = path is not None or "CONFIG_PATH" in env
    file = Path(path if path is not None else env.get("CONFIG_PATH", "config.yaml"))
    raw: Any = {}
    if file.exists():
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(str(file), f"not valid YAML: {exc}") from None
    elif explicit:
        raise ConfigError("CONFIG_PATH" if path is None else str(file), "file not found")
    return config_from_mapping(raw, env)
