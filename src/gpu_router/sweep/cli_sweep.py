"""`gpu-router sweep SWEEP.yaml --out DIR [--workers N] [--ray [ADDRESS]] [--plots]`."""

from __future__ import annotations

import argparse
import os
import sys

from ..policy.errors import RouterError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", help="sweep grid YAML (see sweeps/)")
    parser.add_argument("--out", required=True, help="result directory (re-runs skip done cells)")
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel local processes (default: all CPUs)"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: a local instance, or the cluster at ADDRESS ('auto', 'ray://host:10001')",
    )
    parser.add_argument("--plots", action="store_true", help="write figures to DIR/figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .grid import load_sweep
    from .runner import run_sweep
    from .stats import comparison_table, confidence_intervals, format_comparison

    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        print("gpu-router sweep: --workers must be >= 1", file=sys.stderr)
        return 2
    try:
        spec = load_sweep(args.sweep)
    except RouterError as exc:
        print(f"gpu-router sweep: {exc}", file=sys.stderr)
        return 2
    print(
        f"{spec.name}: {len(spec.cells)} cells ({len(spec.strategies)} strategies x "
        f"{len(spec.scenarios)} scenarios x loads x seeds) -> {args.out}",
        file=sys.stderr,
    )
    result = run_sweep(
        spec, args.out, workers=workers, ray_address=args.ray, progress=not args.no_progress
    )
    confidence_intervals(result.table).to_parquet(result.out / "stats.parquet", index=False)
    backend = f"ray ({args.ray})" if args.ray else f"{workers} local worker(s)"
    print(
        f"\n{spec.name}: ran {result.ran}, skipped {result.skipped} done, "
        f"failed {len(result.failed)} cells in {result.wall_s:.1f} s on {backend}"
    )
    print("\nStrategy comparison (priority 'all'; mean over cells; wins = lowest p99 wait):")
    print(format_comparison(comparison_table(result.table)))
    if args.plots and not result.table.empty:
        from .plots import write_all

        paths = write_all(result.out)
        print(f"\n{len(paths)} figures in {result.out / 'figures'}")
    print(f"\ntable: {result.out / 'results.parquet'}")
    return 1 if result.failed else 0
