"""Service configuration: the sections of `config.yaml`, the whole `ServiceConfig`, and how
it is read (file, then environment overrides). One error type, `ConfigError`, names the key.
"""

from .errors import ConfigError
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
    MetadataComponents,
    QueueSection,
    RequestRouterSection,
    TrustedNetwork,
    UserQuotaSection,
)
from .service_config import ENV_OVERRIDES, ServiceConfig, config_from_mapping, load_config
from .shipping import LoggingSection, MetricsSection, ShippingOptions

__all__ = [
    "ENV_OVERRIDES",
    "ApiKey",
    "ApiMetadataSection",
    "ApiSection",
    "AuthSection",
    "ConfigError",
    "ConfigSection",
    "DispatchSection",
    "ErrorHandlerSection",
    "GpuMonitoringSection",
    "JournalSection",
    "LoadBalancerSection",
    "LoggingSection",
    "MetadataComponents",
    "MetricsSection",
    "QueueSection",
    "RequestRouterSection",
    "ServiceConfig",
    "ShippingOptions",
    "TrustedNetwork",
    "UserQuotaSection",
    "config_from_mapping",
    "load_config",
]
