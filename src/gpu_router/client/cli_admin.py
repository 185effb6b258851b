"""`gpu-router admin`: the admin API from a shell, over :class:`RouterClient`.

    gpu-router admin [--url URL] [--key KEY] [--json] gpus
    gpu-router admin maintenance GPU [--reason R] [--minutes M]
    gpu-router admin restart GPU [--force]
    gpu-router admin cancel REQUEST_ID [--user USER] [--reason R]
    gpu-router admin quota USER [--requests-per-minute N] [--requests-per-day N]
                               [--gpu-time-minutes N] [--concurrent-requests N]
                               [--priority-requests N]

``--url`` defaults to ``$GPU_ROUTER_URL``, else http://127.0.0.1:8000; the key comes from
``--key``, else ``$GPU_ROUTER_KEY``. ``quota USER`` without a limit shows the quota.
Output is for people unless ``--json`` (the answer's ``data``). Exit status: 0 done,
1 the API refused (its message on stderr) or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from gpu_router.client.errors import RouterError
from gpu_router.client.models import QUOTA_FIELDS, AdminResult, CancelResult, GpuList, Quota
from gpu_router.client.sync import RouterClient

DEFAULT_URL = "http://127.0.0.1:8000"


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand (SUPPRESS: the later one wins)."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("--url", default=s, help=f"router base URL ($GPU_ROUTER_URL, {DEFAULT_URL})")
    p.add_argument("--key", default=s, help="admin API key (default: $GPU_ROUTER_KEY)")
    p.add_argument("--json", action="store_true", default=s, help="print JSON for machines")
    p.add_argument("--timeout", type=float, default=s, help="seconds per HTTP call (10)")
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = _common()
    for action in common._actions:
        parser._add_action(action)
    sub = parser.add_subparsers(dest="admin_command", required=True)
    sub.add_parser("gpus", parents=[common], help="list the fleet")
    m = sub.add_parser("maintenance", parents=[common], help="drain a GPU: no new work")
    m.add_argument("gpu")
    m.add_argument("--reason", default="")
    m.add_argument("--minutes", type=int, help="estimated duration")
    r = sub.add_parser("restart", parents=[common], help="put a GPU back in service")
    r.add_argument("gpu")
    r.add_argument("--force", action="store_true", help="re-queue the requests running there")
    c = sub.add_parser("cancel", parents=[common], help="cancel anyone's request")
    c.add_argument("request_id")
    c.add_argument("--reason", default="")
    c.add_argument(
        "--user", default=None, help="whose request (ids are per user; default: the last one)"
    )
    q = sub.add_parser("quota", parents=[common], help="show or set a user's quota")
    q.add_argument("user")
    for name in QUOTA_FIELDS:
        q.add_argument("--" + name.replace("_", "-"), type=int, metavar="N", dest=name)


def _gpus(out: GpuList) -> str:
    rows = [("GPU", "STATUS", "HEALTH", "MEMORY MB", "UTIL", "ACTIVE", "QUEUED", "NAME")]
    for g in out.gpus:
        mem = f"{g.memory.get('used', 0)}/{g.memory.get('total', 0)}"
        util = f"{g.utilization.get('gpu', 0.0):.0f}%"
        rows.append(
            (
                g.gpu_id,
                g.status,
                g.health_status,
                mem,
                util,
                str(g.active_requests),
                str(g.queued_requests),
                g.name,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _quota(q: Quota) -> str:
    lines = [f"user {q.user_id}"]
    for name, item in {**q.quotas, **q.rate_limits}.items():
        reset = f", resets {item['reset_time']}" if item.get("reset_time") else ""
        lines.append(
            f"  {name}: limit {item['limit']}, used {item['used']}, "
            f"remaining {item['remaining']}{reset}"
        )
    return "\n".join(lines)


def _call(rc: RouterClient, args: argparse.Namespace) -> tuple[Any, str]:
    cmd = args.admin_command
    if cmd == "gpus":
        gl = rc.gpus()
        return gl.raw, _gpus(gl)
    if cmd == "maintenance":
        a: AdminResult = rc.maintenance(args.gpu, args.reason, args.minutes)
        return a.raw, f"{a.target}: {a.status} ({a.message})"
    if cmd == "restart":
        a = rc.restart(args.gpu, args.force)
        return a.raw, f"{a.target}: {a.status} ({a.message})"
    if cmd == "cancel":
        c: CancelResult = rc.admin_cancel(args.request_id, args.reason, args.user)
        return c.raw, f"{c.request_id}: {c.status} ({c.message})"
    limits = {k: getattr(args, k) for k in QUOTA_FIELDS if getattr(args, k) is not None}
    q = rc.set_quota(args.user, **limits) if limits else rc.quota(args.user)
    return q.raw, _quota(q)


def run(args: argparse.Namespace) -> int:
    url = getattr(args, "url", None) or os.environ.get("GPU_ROUTER_URL") or DEFAULT_URL
    key = getattr(args, "key", None) or os.environ.get("GPU_ROUTER_KEY")
    as_json = getattr(args, "json", False)
    try:
        with RouterClient(url, key or "", timeout=getattr(args, "timeout", 10.0)) as rc:
            data, text = _call(rc, args)
    except RouterError as exc:
        if as_json:
            err: dict[str, Any] = {"status": exc.status, "code": exc.code, "message": exc.message}
            if exc.retry_after is not None:
                err["retry_after"] = exc.retry_after
            if exc.details:
                err["details"] = exc.details
            print(json.dumps({"error": err}))
        print(f"gpu-router admin: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if as_json else text)
    return 0
