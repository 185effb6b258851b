"""The `gpu-router` console script: one subcommand per workflow.

Each subcommand lives in the module that owns it; that module exposes
``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when used,
so `gpu-router sim` never loads Starlette and `gpu-router serve` never loads SimPy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("gpu_router.sim.cli_sim", "run one scenario for one or more strategies"),
    "gate": ("gpu_router.sim.cli_gate", "run the gate scenarios; non-zero exit on a missed SLA"),
    "sweep": ("gpu_router.sweep.cli_sweep", "run a strategy x scenario x load x seed grid"),
    "twin": ("gpu_router.twin.cli", "run the simulator and the live service on one workload"),
    "serve": ("gpu_router.shim.serve", "serve the routing API"),
    "worker": ("gpu_router.shim.worker.cli", "run a reference GPU worker"),
    "dashboard": ("gpu_router.sweep.cli_dashboard", "open the Streamlit comparison dashboard"),
    "admin": ("gpu_router.client.cli_admin", "admin calls to a running router (GPUs, quotas)"),
    "keys": ("gpu_router.shim.keys", "create API keys in a keys file"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu-router", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(_module=module_name)
        if name in argv[:1]:  # only the chosen subcommand's module is imported
            importlib.import_module(module_name).add_arguments(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
