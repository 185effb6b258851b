"""`gpu-router dashboard [DIR]`: launch the Streamlit comparison dashboard on a result directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..resources import DataNotFound, dashboard_app


def _app() -> Path:
    try:
        return dashboard_app()
    except DataNotFound:
        return Path("dashboards") / "app.py"  # run() reports it missing


#: The app: the repository's dashboards/app.py, or its copy inside an installed wheel.
APP = _app()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        nargs="?",
        default="results/default",
        help="sweep result directory (default: results/default)",
    )
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--app", default=str(APP), help="the Streamlit script")
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the streamlit command instead of running it",
    )


def command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        args.app,
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--results",
        str(args.dir),
    ]


def run(args: argparse.Namespace) -> int:
    if not Path(args.app).is_file():
        print(f"gpu-router dashboard: no app at {args.app}", file=sys.stderr)
        return 2
    cmd = command(args)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    print(f"dashboard: http://{args.address}:{args.port}  (results: {args.dir})", file=sys.stderr)
    sys.stderr.flush()
    os.execv(cmd[0], cmd)  # become streamlit: signals reach it directly
    return 0  # pragma: no cover - execv does not return
