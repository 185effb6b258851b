"""Service configuration: the sections of `config.yaml`, the whole `ServiceConfig`, and how
it is read (file, then environment overrides). One error type, `ConfigError`, names the key.
"""

from .callbacks import CallbacksSection
from .connections import ConnectionsSection
from .errors import ConfigError
from .model_locality import ModelLocalitySection
from .sections import (
    ApiKey,
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
    MetadataComponents,
    QueueSection,
    RequestRouterSection,
    TrustedNetwork,
    UserQuotaSection,
)
from .service_config import ENV_OVERRIDES, ServiceConfig, config_from_mapping, load_config
from .worker_auth import WorkerAuthSection, check_token, read_token_file, worker_tokens

__all__ = [
    "ENV_OVERRIDES",
    "ApiKey",
    "ApiMetadataSection",
    "ApiSection",
    "AuthSection",
    "CallbacksSection",
    "ConfigError",
    "ConfigSection",
    "ConnectionsSection",
    "DispatchSection",
    "ErrorHandlerSection",
    "GpuMonitoringSection",
    "JournalSection",
    "LoadBalancerSection",
    "LoggingSection",
    "MetadataComponents",
    "ModelLocalitySection",
    "QueueSection",
    "RequestRouterSection",
    "ServiceConfig",
    "TrustedNetwork",
    "UserQuotaSection",
    "WorkerAuthSection",
    "check_token",
    "config_from_mapping",
    "load_config",
    "read_token_file",
    "worker_tokens",
]
