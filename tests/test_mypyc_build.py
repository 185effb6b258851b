"""The optional mypyc build (``GPU_ROUTER_MYPYC=1``, setup.py): it compiles, and the
compiled policy core and simulator give the pure-Python seeded results exactly
(benchmarks/compiled_check.py). The build test is slow (about 30 s of two cores)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_default_install_is_pure_python() -> None:
    import gpu_router.policy.router as router

    assert router.__file__ is not None and router.__file__.endswith(".py")


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("gcc") is None or importlib.util.find_spec("mypyc") is None,
    reason="needs a C compiler and mypyc (from the dev extras' mypy)",
)
def test_compiled_build_gives_the_same_seeded_results(tmp_path: Path) -> None:
    wheels, target = tmp_path / "dist", tmp_path / "site"
    env = {**os.environ, "GPU_ROUTER_MYPYC": "1"}
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        env=env,
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("gpu_router-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    for name in ("router", "sorted_keys", "records"):
        assert list((target / "gpu_router" / "policy").glob(f"{name}.*.so")), name
    for name in ("engine", "faults", "gpus", "kernel", "monitor", "records"):  # per event
        assert list((target / "gpu_router" / "sim").glob(f"{name}.*.so")), name
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compiled_check.py"), "--compiled", str(target)],
        capture_output=True,
        text=True,
    )
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["identical"], report
    assert len(report["cases"]) == 7 and all(c["same"] for c in report["cases"])
