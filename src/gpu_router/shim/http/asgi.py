"""An app factory any ASGI server can call with no arguments.

``uvicorn --factory gpu_router.shim.http.asgi:app_from_env`` (or hypercorn, granian,
gunicorn's uvicorn worker) builds the app from the environment as ``gpu-router serve``
does from its flags: the config file at ``$CONFIG_PATH`` (else ``./config.yaml`` if
present) with the deployment guide's environment overrides, and the GPU source it names;
``$GPU_ROUTER_VIRTUAL_GPUS=N`` forces a virtual fleet of N GPUs. The server's own
options (host, port, workers, TLS) are the server's to set. An invalid config raises
:class:`~gpu_router.shim.config.ConfigError` naming the key, before anything binds.

The ``connections`` limits: ``body_timeout_s`` is the app's own and holds under any
server. The others live below the app (``shim.http.connections``); under uvicorn, name
the guarded protocol, built from the same environment, as its HTTP implementation:
``uvicorn --factory gpu_router.shim.http.asgi:app_from_env --http
gpu_router.shim.http.asgi:GuardedProtocol --timeout-keep-alive 5``. Other servers apply
their own limits (hypercorn: ``h11_max_incomplete_size``, ``keep_alive_timeout``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette

from gpu_router.shim.config import ConfigError, load_config
from gpu_router.shim.core.policy_config import policy_config
from gpu_router.shim.gpu_sources.factory import source_from_config
from gpu_router.shim.http.app import create_app
from gpu_router.shim.logs import setup_logging

ENV_VIRTUAL_GPUS = "GPU_ROUTER_VIRTUAL_GPUS"


def app_from_env(env: Mapping[str, str] | None = None) -> Starlette:
    """The service's app, configured from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    cfg = load_config(None, env=env)
    policy_config(cfg)  # strategy names and weights are checked before serving
    virtual = env.get(ENV_VIRTUAL_GPUS)
    count = None
    if virtual:
        if not virtual.isdigit() or not 1 <= int(virtual) <= 10_000:
            raise ConfigError(ENV_VIRTUAL_GPUS, f"must be between 1 and 10000 (got {virtual!r})")
        count = int(virtual)
    logger = setup_logging(
        cfg.logging.level,
        json_format=cfg.logging.json_format,
        url=cfg.logging.url,
        shipping=cfg.logging.shipping,
    )
    source = source_from_config(cfg.gpu_monitoring, count, cfg.model_locality, cfg.seed)
    return create_app(cfg, gpu_source=source, logger=logger, close_source=True)


def __getattr__(name: str) -> Any:
    """``GuardedProtocol``: uvicorn's httptools protocol with the ``connections`` limits of
    the config the environment names (built on first access, for ``uvicorn --http``)."""
    if name == "GuardedProtocol":
        from gpu_router.shim.http.connections import guarded_protocol

        cls = guarded_protocol(load_config(None, env=os.environ).connections)
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
