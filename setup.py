"""Build hook: copy the repository-root folders the CLI reads (data/, scenarios/, sweeps/,
dashboards/) into the wheel as ``gpu_router/_share/``, so the repository keeps one copy
of each and an installed ``gpu-router`` finds them (``gpu_router.resources``).

Everything else is in pyproject.toml; an editable install needs no copy (it reads the
checkout's folders).

Optional compiled build: with ``GPU_ROUTER_MYPYC=1`` the hottest policy and simulator
modules (``MYPYC_MODULES``) are compiled with mypyc (from the mypy of the dev extras) into C
extensions next to their sources; the pure-Python modules stay the reference and the
default. Build it as a wheel, not editable (an in-place build would put the ``.so``
files into the checkout, where they shadow the sources):

    GPU_ROUTER_MYPYC=1 .venv/bin/pip wheel --no-deps --no-build-isolation -w dist .

``benchmarks/compiled_check.py`` checks that such a build gives the pure-Python seeded
results exactly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHARED = ("data", "scenarios", "sweeps", "dashboards")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
#: compiled by ``GPU_ROUTER_MYPYC=1``, relative to ``src/gpu_router`` (the Router's
#: per-request path, all pure policy, and the simulator's per-event code)
MYPYC_MODULES = (
    "policy/admission",
    "policy/arrival_rates",
    "policy/binding",
    "policy/decisions",
    "policy/estimator",
    "policy/fleet",
    "policy/gpu_service",
    "policy/outlier",
    "policy/queue",
    "policy/records",
    "policy/router",
    "policy/router_state",
    "policy/sorted_keys",
    "policy/strategies/earliest_completion",
    "policy/timeouts",
    "sim/engine",
    "sim/faults",
    "sim/gpus",
    "sim/kernel",
    "sim/monitor",
    "sim/records",
)


def ext_modules() -> list[object]:
    """The mypyc extensions when ``GPU_ROUTER_MYPYC=1``, else none (pure Python)."""
    if os.environ.get("GPU_ROUTER_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    paths = [f"src/gpu_router/{m}.py" for m in MYPYC_MODULES]
    return list(mypycify(paths, opt_level="3"))


class BuildPyWithShare(build_py):
    """``build_py`` plus the shared folders under ``<build_lib>/gpu_router/_share``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "gpu_router" / "_share"
        for name in SHARED:
            src = ROOT / name
            if not src.is_dir():
                raise SystemExit(f"setup.py: {src} is missing (an sdist must include it)")
            target = dest / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(src, target, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithShare}, ext_modules=ext_modules())
