"""benchmarks/adversarial.py end to end at tiny counts: the guarded router cuts a header
flood off at once, closes idle connections, keeps /health answering, and the script
prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "adversarial.py"


def test_adversarial_smoke(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("connections:\n  idle_timeout_s: 1.0\n  max_connections_per_client: 20\n")
    out = tmp_path / "adv.json"
    args = ["--config", str(cfg), "--header-mb", "8", "--flooders", "1", "--idle", "60"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--hold-s", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())["guarded"]
    flood, hold = result["header_flood"], result["idle_hold"]
    assert flood["flooders"][0]["cut_off"] and flood["flooders"][0]["sent_mb"] < 8
    assert flood["health_failures"] == 0 and hold["health_failures"] == 0
    assert hold["opened"] == 60 and hold["held_open_to_the_end"] == 0
    assert hold["closed_within_3_s_of_connect"] >= 20  # 2 x (30 - 20) over the cap, and idle ones
