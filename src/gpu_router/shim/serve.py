"""`gpu-router serve [--config FILE] [--virtual-gpus N] [--host H] [--port P] [--keys-file F]`.

Reads the config (file, then environment overrides, then these flags), refuses to start
on an invalid one naming the key and the reason, builds the GPU source the config names
(``gpu_monitoring.source``: virtual, nvml or monitoring; ``--virtual-gpus`` forces a
virtual fleet of N GPUs) and serves the API with uvicorn, on uvloop's event loop and the
httptools HTTP parser when they are installed (they are dependencies; uvicorn's pure-Python
h11 parser and asyncio's loop cost about twice as much CPU per request). The
``connections`` limits (header size, count and deadline, idle connections, connection
caps) are enforced below the app by ``shim.http.connections``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from gpu_router.shim.config import ConfigError, ServiceConfig, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="config.yaml (default: $CONFIG_PATH, else ./config.yaml if present)",
    )
    parser.add_argument(
        "--virtual-gpus",
        type=int,
        metavar="N",
        help="serve over N virtual GPUs whatever the config says",
    )
    parser.add_argument("--host", help="bind address (overrides api.host and API_HOST)")
    parser.add_argument("--port", type=int, help="port (overrides api.port and API_PORT)")
    parser.add_argument(
        "--store",
        "--journal",
        dest="journal",
        metavar="PATH|URL",
        help="the store: a SQLite journal file, or a postgresql:// URL (overrides journal.path)",
    )
    parser.add_argument(
        "--keys-file",
        metavar="PATH",
        help="API keys file from `gpu-router keys create` (overrides auth.keys_file)",
    )


def resolve(args: argparse.Namespace, env: dict[str, str] | None = None) -> ServiceConfig:
    cfg = load_config(args.config, env=os.environ if env is None else env)
    api: dict[str, Any] = {}
    if args.host is not None:
        api["host"] = args.host
    if args.port is not None:
        api["port"] = args.port
    changes: dict[str, Any] = {}
    if api:
        changes["api"] = cfg.api.model_copy(update=api)
    if args.journal is not None:
        changes["journal"] = cfg.journal.model_copy(update={"path": args.journal})
    if getattr(args, "keys_file", None) is not None:
        changes["auth"] = cfg.auth.model_copy(update={"keys_file": args.keys_file})
    cfg = cfg.model_copy(update=changes) if changes else cfg
    if args.virtual_gpus is not None and not 1 <= args.virtual_gpus <= 10_000:
        raise ConfigError(
            "--virtual-gpus", f"must be between 1 and 10000 (got {args.virtual_gpus})"
        )
    if not 0 <= cfg.api.port <= 65535:
        raise ConfigError("--port", f"must be between 0 and 65535 (got {cfg.api.port})")
    return cfg


def fast_servers() -> dict[str, str]:
    """uvicorn's ``loop`` and ``http`` settings: uvloop and httptools where importable."""
    out = {"loop": "asyncio", "http": "h11"}
    for key, module, value in (("loop", "uvloop", "uvloop"), ("http", "httptools", "httptools")):
        try:
            __import__(module)
        except ImportError:
            continue
        out[key] = value
    return out


def serve_options(cfg: ServiceConfig) -> dict[str, Any]:
    """uvicorn's ``loop``, ``http`` and connection-limit settings: uvloop where importable;
    httptools, when importable, with the ``connections`` limits enforced by
    :func:`~gpu_router.shim.http.connections.guarded_protocol`, else h11 with the limits
    uvicorn's own options can express."""
    from gpu_router.shim.http.connections import uvicorn_options

    servers = fast_servers()
    return {"loop": servers["loop"], **uvicorn_options(cfg.connections, servers["http"])}


def tune_gc() -> None:
    """Short garbage-collector passes: the objects made at start (modules, config, the
    fleet) are frozen out of every later pass, and the first generation is collected once
    2,000 tracked objects outlive their request (records kept for the status API, finished
    jobs). A pass costs about 0.3 us per object in it, so the threshold sets the pause:
    measured at 1,000 req/s, 20,000 gave two passes of 5-6 ms per 5 s and 2,000 twenty of
    0.6-0.7 ms, the same 11-14 ms of GC in all; a 5 ms pause is a p99 event at that rate,
    0.6 ms is not. (The default, 700, ran far more passes when requests were heavier.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(2_000, 50, 100)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = resolve(args)
        from gpu_router.shim.core.policy_config import policy_config

        policy_config(cfg)  # strategy names and weights are checked before binding a port
        from gpu_router.shim.keys import all_keys

        all_keys(cfg.auth)  # a missing or malformed keys file, too
        from gpu_router.shim.config import worker_tokens

        worker_tokens(cfg.worker_auth)  # and an unreadable worker token file
        from gpu_router.shim.core.callbacks import signing_secret

        signing_secret(cfg.callbacks)  # or callback signing key file
    except ConfigError as exc:
        print(f"gpu-router serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from gpu_router.shim.gpu_sources.factory import source_from_config
    from gpu_router.shim.http.app import create_app
    from gpu_router.shim.logs import setup_logging

    logger = setup_logging(
        cfg.logging.level,
        json_format=cfg.logging.json_format,
        url=cfg.logging.url,
        shipping=cfg.logging.shipping,
    )
    try:
        source = source_from_config(
            cfg.gpu_monitoring, args.virtual_gpus, cfg.model_locality, cfg.seed
        )
    except Exception as exc:  # NVML missing, bad worker URLs, ...
        print(
            f"gpu-router serve: gpu_monitoring.source={cfg.gpu_monitoring.source}: {exc}",
            file=sys.stderr,
        )
        return 2
    app = create_app(cfg, gpu_source=source, logger=logger, close_source=True)
    tune_gc()
    uvicorn.run(
        app,
        host=cfg.api.host,
        port=cfg.api.port,
        log_level="warning",
        access_log=cfg.api.debug,
        lifespan="on",
        # X-Forwarded-For is believed only from the configured proxies (none by default):
        # trusted_networks must see the real peer, not an address a caller wrote
        proxy_headers=bool(cfg.api.forwarded_allow_ips),
        forwarded_allow_ips=",".join(cfg.api.forwarded_allow_ips) or None,
        **serve_options(cfg),
    )
    return 0
