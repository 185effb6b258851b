"""`gpu-router worker --gpu N --port P [--host 127.0.0.1] [--mode auto|cuda|cpu]
[--token-file F]`.

Runs the reference worker (``shim.worker.server``) for GPU N. With ``--router-url URL
--router-key KEY`` it joins that router's fleet at run time (``worker.registration``:
register, heartbeat, leave at shutdown) as ``--gpu-id`` (default ``gpu-N``), reporting
``--memory-mb`` and ``--compute-capability``, ``--max-jobs`` slots. ``--job-prefix`` starts
every job id it hands out (default ``j``: ids ``j1-<pid>``, ``j2-<pid>``, ...). Once the
device is warm and the port accepts connections. With ``--token-file F`` (its first line)
or ``$GPU_ROUTER_WORKER_TOKEN``, every job call must carry ``Authorization: Bearer
<token>`` (the router's ``worker_auth``), else 401. Once the it prints one JSON line to stdout:
``{"event": "worker_ready", "url", "gpu", "mode", "device_name", "pid"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", type=int, required=True, help="GPU index (NVML/PCI order)")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (default 9000)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--mode",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="cuda: PyTorch on the GPU (required); cpu: numpy; auto: cuda when available",
    )
    parser.add_argument("--max-jobs", type=int, default=16, help="jobs running at once")
    parser.add_argument(
        "--max-duration-s", type=float, default=3600.0, help="longest a job may run"
    )
    parser.add_argument(
        "--job-prefix", default="j", help="start of every job id (1-64 printable characters)"
    )
    parser.add_argument(
        "--job-ttl-s",
        type=float,
        default=86_400.0,
        help="forget a finished job never acknowledged this long after it ended (s)",
    )
    parser.add_argument("--job-log", default=None, help="append a JSON line per job start/end")
    parser.add_argument(
        "--model-load-s",
        type=float,
        default=22.7,
        help="seconds a model load takes (CPU mode: a delay; default: the GenAI trace's median)",
    )
    parser.add_argument(
        "--model-memory-mb",
        type=float,
        default=40_000.0,
        help="memory the resident models may take, MB (least recently used evicted)",
    )
    parser.add_argument(
        "--model-weights",
        choices=("auto", "delay", "torch"),
        default="auto",
        help="delay: a load is --model-load-s of waiting; torch: real PyTorch tensors made"
        " once in --model-cache and loaded onto the device; auto: torch on cuda, else delay",
    )
    parser.add_argument(
        "--model-cache",
        default=os.path.join(os.path.expanduser("~"), ".cache", "gpu-router", "weights"),
        help="folder of the torch weights files (made once; <id>.pt given there is used)",
    )
    parser.add_argument(
        "--model-weights-max-mb",
        type=float,
        default=1024.0,
        help="largest torch weights made for one model, MiB (a model's memory_mb is capped)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")
    join = parser.add_argument_group("joining a router's fleet at run time")
    join.add_argument("--router-url", help="register with this router and heartbeat")
    join.add_argument("--router-key", help="an admin API key of that router")
    join.add_argument("--gpu-id", help="the GPU id to register (default gpu-<N>)")
    join.add_argument("--advertise-url", help="this worker's URL for the router")
    join.add_argument("--memory-mb", type=float, default=16_384.0, help="GPU memory to report")
    join.add_argument("--compute-capability", default="8.0", help="compute capability to report")
    parser.add_argument(
        "--token-file",
        default=None,
        help=f"file whose first line is the token job calls must carry (else ${TOKEN_ENV})",
    )


TOKEN_ENV = "GPU_ROUTER_WORKER_TOKEN"  # noqa: S105 - the variable's name, not a token


def worker_token(args: argparse.Namespace, env: dict[str, str]) -> str | None:
    """The token from ``--token-file``, else ``$GPU_ROUTER_WORKER_TOKEN``, else None;
    :class:`~gpu_router.shim.config.ConfigError` for an unreadable or weak one."""
    from gpu_router.shim.config import check_token, read_token_file

    if args.token_file is not None:
        return read_token_file(args.token_file, "--token-file")
    value = env.get(TOKEN_ENV)
    return None if value is None else check_token(value.strip(), f"${TOKEN_ENV}")


def model_holder(args: argparse.Namespace, device: Any) -> Any:
    """The worker's models: real torch weights (``--model-weights torch``, or ``auto`` on
    a CUDA device) or calibrated delays; ImportError when torch is asked for and absent."""
    from gpu_router.shim.worker.models import ModelHolder

    kind = args.model_weights
    if kind == "auto":
        kind = "torch" if device.mode == "cuda" else "delay"
    if kind == "delay":
        return ModelHolder(args.model_memory_mb, args.model_load_s)
    from gpu_router.shim.worker.torch_models import TorchModelHolder

    return TorchModelHolder(
        args.model_memory_mb, device.label, args.model_cache, args.model_weights_max_mb
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from gpu_router.shim.worker.device import WorkerError, detect_device
    from gpu_router.shim.worker.jobs import Worker
    from gpu_router.shim.worker.server import create_app

    for name, value, lo, hi in (
        ("--port", args.port, 0, 65535),
        ("--max-jobs", args.max_jobs, 1, 4096),
    ):
        if not lo <= value <= hi:
            print(f"gpu-router worker: {name}={value}: must be in [{lo}, {hi}]", file=sys.stderr)
            return 2
    if not 0 < args.max_duration_s <= 7 * 86400:
        print(
            f"gpu-router worker: --max-duration-s={args.max_duration_s}: must be in (0, 604800]",
            file=sys.stderr,
        )
        return 2
    if not (0 < len(args.job_prefix) <= 64 and args.job_prefix.isprintable()):
        print(
            f"gpu-router worker: --job-prefix={args.job_prefix!r}: must be 1-64 printable"
            " characters",
            file=sys.stderr,
        )
        return 2
    if not (args.model_load_s >= 0 and args.model_memory_mb > 0):
        print(
            "gpu-router worker: --model-load-s must be >= 0 and --model-memory-mb > 0",
            file=sys.stderr,
        )
        return 2
    if not args.job_ttl_s > 0:
        print(f"gpu-router worker: --job-ttl-s={args.job_ttl_s}: must be > 0", file=sys.stderr)
        return 2
    from gpu_router.shim.config import ConfigError

    try:
        token = worker_token(args, dict(os.environ))
    except ConfigError as exc:
        print(f"gpu-router worker: {exc}", file=sys.stderr)
        return 2
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"gpu-router worker: warning: no --token-file or ${TOKEN_ENV}: anyone who can "
            f"reach {args.host}:{args.port} can run jobs",
            file=sys.stderr,
        )
    try:
        device = detect_device(args.gpu, args.mode)
    except WorkerError as exc:
        print(f"gpu-router worker: {exc}", file=sys.stderr)
        return 2
    try:
        models = model_holder(args, device)
    except (ImportError, ValueError) as exc:
        print(f"gpu-router worker: --model-weights: {exc}", file=sys.stderr)
        return 2
    worker = Worker(
        device,
        max_jobs=args.max_jobs,
        max_duration_s=args.max_duration_s,
        job_prefix=args.job_prefix,
        job_ttl_s=args.job_ttl_s,
        job_log=args.job_log,
        models=models,
    )

    def ready() -> None:
        line = {
            "event": "worker_ready",
            "url": f"http://{args.host}:{args.port}",
            "gpu": device.index,
            "mode": device.mode,
            "device_name": device.name,
            "pid": os.getpid(),
        }
        print(json.dumps(line), flush=True)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # lifespan done and the socket bound
                ready()

    registration = None
    if args.router_url:
        from gpu_router.shim.worker.registration import Registration

        if not args.router_key:
            print("gpu-router worker: --router-url needs --router-key", file=sys.stderr)
            return 2
        spec = {
            "gpu_id": args.gpu_id or f"gpu-{args.gpu}",
            "url": args.advertise_url or f"http://{args.host}:{args.port}",
            "name": device.name,
            "memory_total_mb": args.memory_mb,
            "compute_capability": args.compute_capability,
            "slots": args.max_jobs,
        }
        registration = Registration(
            args.router_url,
            args.router_key,
            spec,
            lambda: {"models": [m["id"] for m in worker.models.held()]},
        )
    config = uvicorn.Config(
        create_app(worker, token, registration),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )
    server = Server(config)
    server.run()
    return 0 if server.started else 1
