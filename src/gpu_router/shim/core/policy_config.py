"""The policy ``RouterConfig`` a service config describes.

The service's config keys (the deployment guide's) map onto the Router's: strategy and
weights, queue bound and waits per priority, quota defaults, retries and outlier
ejection. A value the policy refuses is a :class:`~gpu_router.shim.config.ConfigError`
naming the key.
"""

from __future__ import annotations

from typing import Any

from gpu_router.policy import (
    DEFAULT_ADMISSION_SHARE,
    DEFAULT_MAX_WAIT_S,
    DEFAULT_SLA_WAIT_S,
    DEFAULT_STRATEGY,
    InvalidValue,
    ModelsConfig,
    OutlierConfig,
    QueueConfig,
    QuotaLimits,
    RetryConfig,
    RouterConfig,
    TimeoutConfig,
)
from gpu_router.shim.config import ConfigError, ServiceConfig


def admission_limits(cfg: ServiceConfig) -> dict[int, float] | None:
    """The longest predicted wait admitted per priority (s): ``sla.admission_wait_s``,
    else ``sla.wait_target_s``, else the policy's SLA defaults; None when
    ``sla.admit_by_wait`` is off."""
    sla = cfg.sla
    if not sla.admit_by_wait:
        return None
    return {**DEFAULT_SLA_WAIT_S, **sla.wait_target_s, **sla.admission_wait_s}


def policy_config(cfg: ServiceConfig) -> RouterConfig:
    """The policy ``RouterConfig`` this service config describes (ConfigError if invalid)."""
    lb, q, uq, eh = cfg.load_balancer, cfg.queue, cfg.user_quota_manager, cfg.error_handler
    strategy = lb.strategy or DEFAULT_STRATEGY
    options: dict[str, Any] = {}
    if strategy.startswith("hybrid") and lb.weights is not None:
        options["weights"] = dict(lb.weights)
    if strategy == "power-of-d":
        options["d"] = lb.d
    try:
        return RouterConfig(
            strategy=strategy,
            strategy_options=options,
            binding=q.binding,
            queue=QueueConfig(
                max_size=q.max_length,
                max_wait_s={**DEFAULT_MAX_WAIT_S, **q.max_wait_s},
                admission_share={**DEFAULT_ADMISSION_SHARE, **q.admission_share},
                fair_share=q.fair_share,
                admission_wait_s=admission_limits(cfg),
                admission_rate_window_s=cfg.sla.admission_rate_window_s,
            ),
            quotas=QuotaLimits(
                requests_per_minute=uq.requests_per_minute,
                requests_per_day=uq.requests_per_day,
                concurrent_requests=uq.default_request_limit,
                priority_requests=uq.default_priority_limit,
                gpu_minutes=(
                    uq.gpu_minutes if uq.gpu_minutes is not None else uq.default_gpu_limit * 1440.0
                ),
                gpu_minutes_period_s=uq.gpu_minutes_period_s,
            ),
            retry=RetryConfig(max_retries=eh.max_retries, backoff_base_s=eh.retry_delay),
            outlier=OutlierConfig(
                consecutive_failures=eh.consecutive_failures,
                base_ejection_s=eh.base_ejection_s,
                max_ejection_s=eh.gpu_cooldown_period,
                max_ejected_share=eh.max_ejected_share,
            ),
            default_timeout_s=None if q.default_timeout_ms is None else q.default_timeout_ms / 1e3,
            timeouts=TimeoutConfig(
                by_type={t: ms / 1e3 for t, ms in q.timeout_by_type_ms.items()},
                by_priority={p: ms / 1e3 for p, ms in q.timeout_by_priority_ms.items()},
                retries=q.timeout_retries,
            ),
            max_temperature_c=cfg.gpu_monitoring.max_temperature,
            models=_models(cfg),
        )
    except InvalidValue as exc:
        key = {"strategy": "load_balancer.strategy", "strategy_options": "load_balancer.weights"}
        if exc.field.startswith("models."):
            key[exc.field] = "model_locality." + exc.field.removeprefix("models.")
        raise ConfigError(
            key.get(exc.field, exc.field), f"{exc.reason} (got {exc.value!r})"
        ) from None


def _models(cfg: ServiceConfig) -> ModelsConfig | None:
    """The policy's model locality settings (None: off)."""
    ml = cfg.model_locality
    if not ml.enabled:
        return None
    return ModelsConfig(
        default_memory_mb=ml.default_memory_mb,
        default_load_s=ml.default_load_s,
        cache_share=ml.cache_share,
        alpha=ml.alpha,
        models=ml.models,
        report_grace_s=ml.report_grace_s,
    )
