"""Check an optional mypyc build of the policy core against the pure-Python reference.

Runs the same seeded scenarios twice, each in its own process: with the package as
installed (pure Python, the reference) and with a compiled build put first on
``PYTHONPATH`` (``setup.py``: ``GPU_ROUTER_MYPYC=1``). Each run prints a SHA-256 digest
of its requests table (every column, every row), the router call count and its wall
seconds; the check fails unless every digest is the same and the compiled run really
imported the ``.so`` modules. Build and check:

    GPU_ROUTER_MYPYC=1 .venv/bin/pip wheel --no-deps --no-build-isolation -w dist .
    .venv/bin/pip install --no-deps --target /tmp/gpu_router_mypyc dist/gpu_router-*.whl
    .venv/bin/python benchmarks/compiled_check.py --compiled /tmp/gpu_router_mypyc

``--other SRC`` compares with any other pure-Python source tree instead (e.g. another
checkout's ``src``: the same seeded results before and after a change).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (scenario file, overrides, strategy, seed): plain M/M/c on 10 and 1,000 GPUs, and
#: scenarios with priorities, quotas, GPU failures, a lagged monitor, a mixed fleet
CASES: list[tuple[str, dict[str, object], str, int]] = [
    ("mmc.yaml", {"fleet.count": 10, "horizon_s": 1500.0, "warmup_s": 0}, "earliest-completion", 1),
    ("mmc.yaml", {"fleet.count": 1000, "horizon_s": 15.0, "warmup_s": 0}, "earliest-completion", 1),
    ("heterogeneous.yaml", {"horizon_s": 300.0}, "earliest-completion", 3),
    ("gpu_failure.yaml", {"horizon_s": 300.0}, "earliest-completion", 2),
    ("priority_overload.yaml", {"horizon_s": 200.0}, "earliest-completion", 4),
    ("quota_abuse.yaml", {"horizon_s": 200.0}, "earliest-completion", 5),
    ("monitor_lag.yaml", {"horizon_s": 200.0}, "earliest-completion", 6),
]


def worker() -> None:
    """Run every case in this process; one JSON line per case on stdout."""
    import gpu_router.policy.router as router_module
    from gpu_router.sim import load_scenario, run_scenario

    for name, overrides, strategy, seed in CASES:
        sc = load_scenario(ROOT / "scenarios" / name, dict(overrides))
        t0 = time.perf_counter()
        res = run_scenario(sc, strategy, seed)
        wall = time.perf_counter() - t0
        table = res.requests.to_csv(index=False).encode()
        print(
            json.dumps(
                {
                    "case": f"{name} {overrides} {strategy} seed {seed}",
                    "requests": len(res.requests),
                    "router_calls": res.info["router_calls"],
                    "digest": hashlib.sha256(table).hexdigest(),
                    "wall_s": round(wall, 3),
                    "router_module": router_module.__file__,
                }
            ),
            flush=True,
        )


def run_side(pythonpath: str | None) -> list[dict[str, object]]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.setdefault("GPU_ROUTER_DATA", str(ROOT / "data"))
    out = subprocess.run(
        [sys.executable, __file__, "--worker"], env=env, capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiled", help="a folder holding a mypyc-built gpu_router")
    ap.add_argument("--other", help="another pure-Python source tree (a checkout's src)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return 0
    if bool(args.compiled) == bool(args.other):
        ap.error("give one of --compiled and --other")
    pure, compiled = run_side(None), run_side(args.compiled or args.other)
    ok = len(pure) == len(compiled) == len(CASES)
    rows = []
    for p, c in zip(pure, compiled, strict=False):
        same = p["digest"] == c["digest"] and p["router_calls"] == c["router_calls"]
        so = str(c["router_module"]).endswith(".so")
        ok = ok and same and so == bool(args.compiled)
        ok = ok and not str(p["router_module"]).endswith(".so")
        rows.append(
            {
                "case": p["case"],
                "requests": p["requests"],
                "same": same,
                "pure_wall_s": p["wall_s"],
                "other_wall_s": c["wall_s"],
                "other_module": c["router_module"],
            }
        )
    print(json.dumps({"identical": ok, "cases": rows}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
