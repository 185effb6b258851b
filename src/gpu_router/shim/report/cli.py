"""``gpu-router report``: a day's or a week's report from the store, as Markdown with PNG
charts. The period starts at ``--since`` (ISO 8601, UTC when no offset is given), else one
period before now; the store is ``--store``, else the config's ``journal.path``."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from gpu_router.policy import DEFAULT_MAX_WAIT_S
from gpu_router.shim.config import ConfigError, load_config
from gpu_router.shim.store import JournalError, open_reader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", choices=["day", "week"], default="day")
    parser.add_argument("--since", metavar="ISO", help="period start (default: now - period)")
    parser.add_argument("--store", metavar="PATH_OR_URL", help="default: the config's journal.path")
    parser.add_argument("--config", metavar="FILE", help="config.yaml (SLA targets, store)")
    parser.add_argument("--out", metavar="DIR", default=".", help="where the report goes")
    parser.add_argument(
        "--sla-objective",
        type=float,
        default=0.95,
        metavar="SHARE",
        help="attainment under which a priority is listed as an anomaly (default 0.95)",
    )


def parse_since(text: str) -> float:
    """ISO 8601 as epoch seconds (a time without an offset is UTC)."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def run(args: argparse.Namespace) -> int:
    from gpu_router.shim.report.render import write_report
    from gpu_router.shim.report.summary import PERIOD_S, summarize

    try:
        cfg = load_config(args.config)
        start = parse_since(args.since) if args.since else time.time() - PERIOD_S[args.period]
        reader = open_reader(args.store or cfg.journal.path)
    except (ConfigError, JournalError, ValueError) as exc:
        print(f"gpu-router report: {exc}", file=sys.stderr)
        return 2
    try:
        summary = summarize(
            reader.since(start),
            period=args.period,
            start=start,
            targets_s={**DEFAULT_MAX_WAIT_S, **cfg.queue.max_wait_s},
            error_threshold=cfg.error_handler.error_threshold,
            sla_objective=args.sla_objective,
        )
    finally:
        reader.close()
    path = write_report(summary, Path(args.out))
    print(path)
    return 0
