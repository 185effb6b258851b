"""benchmarks/overload.py end to end, short: 2x the capacity of 8 virtual GPUs for 8 s
against a real server, with admission by predicted wait and without. The finding was no
429 at all and a queue growing at the overload rate; with admission the queue stays
bounded and the excess is answered 429."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]  # about 50 s

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overload.py"


def test_overload_smoke(tmp_path: Path) -> None:
    out = tmp_path / "overload.json"
    args = ["--duration", "8", "--admission", "both", "--drain-timeout", "40"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    on, off = json.loads(out.read_text())["runs"]
    assert (on["admit_by_wait"], off["admit_by_wait"]) == (True, False)
    assert on["sent"] == off["sent"] == 1280  # 160 req/s for 8 s
    assert on["answers_by_status"].get("429", 0) > 0
    assert set(off["answers_by_status"]) == {"200"}  # the finding: nothing refused ...
    assert off["queue_max"] >= 0.8 * 80 * 8  # ... and the queue grew with the excess (80/s)
    assert off["queue_max"] > 2 * on["queue_max"]
    assert on["recovery_s"] is not None and off["recovery_s"] is not None
