"""One `gpu-router serve --virtual-gpus N` process on loopback for the client tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from .procs import Proc, free_port, router_config, wait_http


def start_virtual_router(tmp: Path, gpus: int = 2) -> tuple[Proc, str]:
    cfg = router_config(tmp, None)
    cfg["gpu_monitoring"].pop("virtual_gpus")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    args = ["serve", "--config", str(path), "--virtual-gpus", str(gpus)]
    p = Proc([*args, "--host", "127.0.0.1", "--port", str(port)], tmp / "router.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc=p)
    except Exception:
        p.stop()
        raise
    return p, url
