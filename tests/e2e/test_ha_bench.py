"""benchmarks/ha.py end to end, small (slow: about a minute): three routers on one
PostgreSQL store, leaders SIGKILLed and SIGSTOPped under load; nothing lost, nothing run
twice, every takeover within a few seconds. And the database stopped for 5 s under load:
nothing acknowledged meanwhile, writes 503 with Retry-After, reads from the standbys'
warm copies, recovery by itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shim.store.pg_server import missing_reason

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ha.py"


def run_ha(*args: str) -> dict:
    """benchmarks/ha.py at 50 req/s, 20 ms jobs, 3 s apart, with ``args``: its JSON report
    (skipped when PostgreSQL is not installed)."""
    why = missing_reason()
    if why is not None:
        pytest.skip(why)
    cmd = [sys.executable, str(SCRIPT), "--rate", "50", "--interval", "3", "--job-ms", "20"]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


@pytest.mark.parametrize("sig", ["KILL", "STOP"])
def test_ha_campaign(sig: str) -> None:
    report = run_ha("--kills", "3", "--signal", sig)
    assert report["kills"] == 3 and report["acknowledged"] > 0
    assert report["lost"] == 0 and report["completed_twice"] == 0
    assert report["completed"] == report["acknowledged"]
    assert report["takeover_s"]["max"] < 10.0


def test_ha_db_outage() -> None:
    report = run_ha("--db-outage", "5", "--read-rate", "20")
    assert report["acknowledged"] > 0 and report["lost"] == 0 and report["completed_twice"] == 0
    out = report["db_outage"]
    assert out["writes_200_during"] == 0  # nothing acknowledged while it was down
    assert out["writes_503_with_retry_after"] > 0 and out["reads_during"]["200"] > 0
    assert out["reads_from"]["warm-copy"] > 0
    assert out["recovery_s"] is not None and out["recovery_s"] < 10.0
