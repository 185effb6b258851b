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


@pytest.mark.parametrize("sig", ["KILL", "STOP"])
def test_ha_campaign(sig: str) -> None:
    why = missing_reason()
    if why is not None:
        pytest.skip(why)
    proc = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--kills", "3", "--rate", "50", "--interval", "3"),
            *("--job-ms", "20", "--signal", sig),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["kills"] == 3 and report["acknowledged"] > 0
    assert report["lost"] == 0 and report["completed_twice"] == 0
    assert report["completed"] == report["acknowledged"]
    assert report["takeover_s"]["max"] < 10.0


def test_ha_db_outage() -> None:
    why = missing_reason()
    if why is not None:
        pytest.skip(why)
    proc = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--db-outage", "5", "--rate", "50", "--interval", "3"),
            *("--job-ms", "20", "--read-rate", "20"),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["acknowledged"] > 0 and report["lost"] == 0 and report["completed_twice"] == 0
    out = report["db_outage"]
    assert out["writes_200_during"] == 0  # nothing acknowledged while it was down
    assert out["writes_503_with_retry_after"] > 0 and out["reads_during"]["200"] > 0
    assert out["reads_from"]["warm-copy"] > 0
    assert out["recovery_s"] is not None and out["recovery_s"] < 10.0
