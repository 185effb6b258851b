"""`gpu-router sim SCENARIO.yaml [--strategy NAME ...] [--seed N] [--out DIR] [--json]`.

Runs one scenario for one or more strategies and prints a comparison table (one
row per strategy, all priorities; priority-5 p99 wait alongside). ``--set
key=value`` overrides scenario keys (dotted, e.g. ``--set workload.load=0.9``).
``--out DIR`` writes each strategy's Parquet tables under DIR/<strategy>/;
``--json`` prints the summaries as JSON on stdout instead of the table.

The header names the defaults that applied (e.g. the one-H100 fleet of a scenario
without ``fleet``) and notes such as an unstable overload or why
``erlang_c_wait_s`` is absent. A scenario or trace that cannot run is refused in
one line on stderr (``sim: steady.yaml: workload.load=inf: ...``), exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from ..policy.errors import RouterError
from ..resources import find_named
from . import metrics as m
from .api import SimResult, load_scenario, run_scenario
from .scenario import Scenario, ScenarioError

TABLE = (
    (m.N_COMPLETED, "done", "{:.0f}"),
    (m.N_REJECTED, "rej", "{:.0f}"),
    (m.N_FAILED, "fail", "{:.0f}"),
    (m.N_LOST, "lost", "{:.0f}"),
    (m.WAIT_MEAN_S, "wait_mean", "{:.3f}"),
    (m.WAIT_P99_S, "wait_p99", "{:.3f}"),
    (m.LATENCY_P99_S, "lat_p99", "{:.3f}"),
    (m.UTILIZATION, "util", "{:.3f}"),
    (m.SLA_ATTAINMENT, "sla", "{:.3f}"),
    (m.JAIN_FAIRNESS, "jain", "{:.3f}"),
    (m.OVERHEAD_US_MEAN, "us/call", "{:.1f}"),
)


def default_strategies() -> list[str]:
    from ..policy.strategies import STRATEGIES

    return [s for s in STRATEGIES if s != "hybrid-seed-sampled"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        type=Path,
        help="scenario YAML file, or a name in ./scenarios or the project's scenarios/",
    )
    parser.add_argument(
        "--strategy",
        "-s",
        action="append",
        dest="strategies",
        help="strategy name (repeatable; default: all registered)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write Parquet tables under DIR/<strategy>/")
    parser.add_argument("--json", action="store_true", help="print summaries as JSON")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario key (dotted), value parsed as YAML",
    )


def _fmt(value: object, pattern: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return pattern.format(value)


def table(rows: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    head = ["strategy", *[h for _, h, _ in TABLE], "p5_wait_p99"]
    body = [
        [name, *[_fmt(a[k], f) for k, _, f in TABLE], _fmt(p5[m.WAIT_P99_S], "{:.3f}")]
        for name, a, p5 in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [head, *body]
    ]
    return "\n".join(lines)


def _run(scenario: Scenario, strategy: str, seed: int, label: str) -> SimResult:
    """run_scenario, its refusals prefixed with the file name like those of loading."""
    try:
        return run_scenario(scenario, strategy, seed)
    except ScenarioError as err:
        msg = str(err)
        raise ScenarioError(msg if msg.startswith(f"{label}:") else f"{label}: {msg}") from None


def run(args: argparse.Namespace) -> int:
    try:
        overrides = {}
        for item in args.set:
            key, eq, value = item.partition("=")
            if not eq:
                raise RouterError(f"--set {item!r}: expected KEY=VALUE")
            overrides[key] = yaml.safe_load(value)
        path = find_named(str(args.scenario), "scenarios") or args.scenario
        scenario = load_scenario(path, overrides)
        rows, out = [], {}
        info: dict[str, Any] = {}
        for strategy in args.strategies or default_strategies():
            res = _run(scenario, strategy, args.seed, args.scenario.name)
            if args.out:
                res.write(args.out / strategy.replace(":", "_"))
            rows.append((strategy, res.row("all"), res.row("5")))
            info = info or res.info
            out[strategy] = json.loads(res.summary.to_json(orient="records"))
    except RouterError as err:
        print(f"sim: {err}", file=sys.stderr)
        return 2
    defaults, notes = info.get("defaults", []), info.get("notes", [])
    if args.json:
        doc = {"scenario": scenario.name, "seed": args.seed, "defaults": defaults, "notes": notes}
        print(json.dumps({**doc, "summary": out}))
    else:
        print(f"scenario {scenario.name}, seed {args.seed}")
        if defaults:
            print("defaults: " + "; ".join(defaults))
        for note in notes:
            print(f"note: {note}")
        print(table(rows))
    return 0
