"""`gpu-router twin TWIN.yaml [--load L ...] [--set key=value ...] [--out FILE.json]`.

Runs the twin check (docs/simulator.md, "The twin check"): the twin file's scenario
through the simulator and through a live ``gpu-router serve`` with real CPU-mode
workers on 127.0.0.1, at each load; prints one markdown table per load, the measured
overheads, and which judged cells (latency p50/p99 per priority) agree within the
tolerance. Exit 0 when every judged cell of the calibrated simulator agrees, 1 when
one does not, 2 for a bad twin file.
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("twin", help="twin file (scenarios/twin/*.yaml)")
    parser.add_argument(
        "--load", type=float, action="append", help="offered load (repeat; default: the file's)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override"
    )
    parser.add_argument("--out", help="write the full result as JSON here")
    parser.add_argument("--keep", help="keep the processes' logs and journals in this folder")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .run import clean, run_twin
    from .spec import TwinError, load_twin

    overrides = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            print(f"gpu-router twin: --set {item!r}: use key=value", file=sys.stderr)
            return 2
        overrides[key] = yaml.safe_load(value)
    try:
        spec = load_twin(args.twin, overrides)
        result = run_twin(
            spec, tuple(args.load) if args.load else None, Path(args.keep) if args.keep else None
        )
    except TwinError as err:
        print(f"gpu-router twin: {err}", file=sys.stderr)
        return 2
    agree = True
    for res in result["loads"]:
        print(res["table"])
        o = res["overheads"]
        parts = ", ".join(
            f"{k} {v['p50_ms']}/{v['p99_ms']}"
            for k, v in o.items()
            if isinstance(v, dict) and "p50_ms" in v
        )
        print(f"\noverheads p50/p99 ms: {parts}; line fit {o['fit']}; refit {o['refit']}")
        for name in ("calibrated_vs_service", "refit_vs_service", "raw_vs_service"):
            c = res[name]
            bad = [
                f"p{j['priority']} {j['metric']} {j['error']:+.1%}"
                for j in c["judged"]
                if not j["ok"]
            ]
            print(
                f"{name}: {'agree' if c['agree'] else 'differ'}"
                f" ({len(c['judged'])} judged{'; ' + ', '.join(bad) if bad else ''})"
            )
        print()
        agree = agree and res["calibrated_vs_service"]["agree"]
    from .compare import tally

    for name in ("calibrated_vs_service", "refit_vs_service", "raw_vs_service"):
        t = tally([res[name] for res in result["loads"]], result["tolerance"])
        print(
            f"{name}, all loads: judged cells within {result['tolerance']:.0%}"
            f" {t['judged_ok']} of {t['judged']}; every priority's p50 and p99"
            f" {t['cells_ok']} of {t['cells']}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(clean(result), indent=1))
    return 0 if agree else 1
