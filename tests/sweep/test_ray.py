"""The same cells on a local Ray instance give the same rows as on local processes."""

from __future__ import annotations

import pandas as pd
import pytest

from gpu_router.sweep.grid import parse_sweep
from gpu_router.sweep.results import NONDETERMINISTIC, load_cell
from gpu_router.sweep.runner import run_sweep

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.timeout(300)]


def test_local_and_ray_give_the_same_rows(tmp_path):
    spec = parse_sweep(
        {
            "name": "ray",
            "scenarios": ["mmc"],
            "strategies": ["round-robin", "join-shortest-queue"],
            "loads": [0.8],
            "seeds": [3],
            "overrides": {
                "horizon_s": 100,
                "warmup_s": 10,
                "fleet.count": 3,
                "router.binding": "early",
            },
        }
    )
    local = run_sweep(spec, tmp_path / "local", workers=2, progress=False)
    on_ray = run_sweep(spec, tmp_path / "ray", workers=2, ray_address="local", progress=False)
    assert (on_ray.ran, on_ray.backend, on_ray.failed) == (2, "ray", {})
    assert not ray.is_initialized()  # the instance it started is shut down
    keep = [c for c in local.table.columns if c not in NONDETERMINISTIC]
    pd.testing.assert_frame_equal(local.table[keep], on_ray.table[keep])
    cid = local.table["cell_id"].iloc[0]
    pd.testing.assert_frame_equal(
        load_cell(tmp_path / "local", cid)["requests"], load_cell(tmp_path / "ray", cid)["requests"]
    )
