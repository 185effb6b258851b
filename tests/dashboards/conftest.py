from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gpu_router.sweep.grid import parse_sweep
from gpu_router.sweep.runner import run_sweep

TESTS = Path(__file__).resolve().parents[1]
APP = TESTS.parent / "dashboards" / "app.py"


def _fakes():
    """The sweep tests' stand-in simulator (tests/sweep/fakes.py), loaded by path."""
    spec = importlib.util.spec_from_file_location("sweep_fakes", TESTS / "sweep" / "fakes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def result_dir(tmp_path_factory) -> Path:
    """A small result set: the fake cell function over two scenarios, three loads, two seeds."""
    base = tmp_path_factory.mktemp("dash")
    scen = base / "scenarios"
    scen.mkdir()
    for name in ("steady", "gpu_failure"):
        (scen / f"{name}.yaml").write_text(f"name: {name}\n")
    strategies = ["round-robin", "least-loaded", "earliest-completion"]
    spec = parse_sweep(
        {
            "name": "dash",
            "scenarios": ["steady", "gpu_failure"],
            "strategies": strategies,
            "loads": [0.5, 0.8, 0.95],
            "seeds": 2,
        },
        base=scen,
        known_strategies=strategies,
        check=False,
    )
    run_sweep(spec, base / "out", cell_fn=_fakes().fake_cell, progress=False)
    return base / "out"
