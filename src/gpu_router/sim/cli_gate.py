"""`gpu-router gate [SCENARIO.yaml ...]`: run the gate scenarios; non-zero exit on a miss."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .gate import default_gate_files, run_gate
from .scenario import ScenarioError, load_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenarios",
        nargs="*",
        type=Path,
        help="gate scenario files (default: scenarios/gate/*.yaml)",
    )


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    files = list(args.scenarios) or default_gate_files()
    if not files:
        print("gate: no gate scenarios found (scenarios/gate/*.yaml)", file=sys.stderr)
        return 2
    try:
        checks = run_gate([load_scenario(f) for f in files])
    except ScenarioError as err:
        print(f"gate: {err}", file=sys.stderr)
        return 2
    for c in checks:
        print(c.describe())
    missed = [c for c in checks if not c.passed]
    wall = time.perf_counter() - t0
    if missed:
        print(f"gate: FAILED, {len(missed)} of {len(checks)} thresholds missed ({wall:.1f} s)")
        return 1
    print(f"gate: passed, {len(checks)} thresholds in {len(files)} scenarios ({wall:.1f} s)")
    return 0
