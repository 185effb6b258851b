"""Build hook: copy the repository-root folders the CLI reads (data/, scenarios/, sweeps/,
dashboards/) into the wheel as ``gpu_router/_share/``, so the repository keeps one copy
of each and an installed ``gpu-router`` finds them (``gpu_router.resources``).

Everything else is in pyproject.toml; an editable install needs no copy (it reads the
checkout's folders).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHARED = ("data", "scenarios", "sweeps", "dashboards")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


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


setup(cmdclass={"build_py": BuildPyWithShare})
