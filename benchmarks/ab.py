"""Before/after in one run: a benchmark alternately under two source trees, repeated.

Each repeat runs the command once with ``PYTHONPATH=<before>/src`` and once with
``PYTHONPATH=<after>/src`` (the order alternates between repeats), parses the JSON it
prints, and reports every run and the per-key medians side by side with their ratio.
The load average is printed before and after, since the machine may be shared.

    .venv/bin/python benchmarks/ab.py --before /work/wt/perf-before --after . --repeats 3 \
        -- benchmarks/sim_throughput.py --requests 20000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def flatten(obj: object, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def run(tree: Path, cmd: list[str], timeout: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    proc = subprocess.run(
        [sys.executable, *cmd], env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    return flatten(json.loads(proc.stdout[proc.stdout.index("{") :]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=Path("."))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    print("load average before:", os.getloadavg(), flush=True)
    for r in range(args.repeats):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for name in order:
            runs[name].append(run(trees[name], cmd, args.timeout))
            print(f"repeat {r} {name}: {json.dumps(runs[name][-1])}", flush=True)
    print("load average after:", os.getloadavg())
    print(f"{'key':<44}{'before':>12}{'after':>12}{'after/before':>14}")
    for key in runs["before"][0]:
        b = statistics.median(x[key] for x in runs["before"])
        a = statistics.median(x[key] for x in runs["after"])
        ratio = a / b if b else float("nan")
        print(f"{key:<44}{b:>12.6g}{a:>12.6g}{ratio:>14.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
