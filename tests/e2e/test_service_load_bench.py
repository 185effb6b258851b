"""benchmarks/service_load.py end to end at a tiny rate: it starts both servers, drives
them, checks every acknowledged request reaches a terminal state, and prints JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "service_load.py"


def test_service_load_smoke(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--rates",
            "20",
            "--duration",
            "1",
            "--repeat",
            "2",
            "--virtual-gpus",
            "4",
            "--job-ms",
            "5",
            "--drain-timeout",
            "30",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report == json.loads(out.read_text())
    rows = report["results"]
    assert [(row["rate"], row["repeat"]) for row in rows] == [(20, 0), (20, 1)]
    for row in rows:
        router, bare = row["router"], row["bare"]
        assert bare["ok"] == 20
        assert router["acknowledged"] == router["ok"] == 20
        assert router["lost"] == 0 and router["terminal"] == {"completed": 20}
        assert router["p99_ms"] is not None and "rate_ratio" in row and "added_p99_ms" in row
        assert router["steal_ms"] >= 0
    added = sorted(row["added_p99_ms"] for row in rows)
    summary = report["summary"]["20"]
    assert summary["added_p99_ms_sorted"] == added
    assert summary["added_p99_ms_median"] == added[1]
    assert summary["router_p99_ms"] == [row["router"]["p99_ms"] for row in rows]


def test_service_load_with_a_postgres_store(tmp_path: Path) -> None:
    from tests.shim.store.pg_server import missing_reason

    why = missing_reason()
    if why is not None:
        pytest.skip(why)
    proc = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), "--rates", "20", "--duration", "1"),
            *("--virtual-gpus", "4", "--job-ms", "5", "--drain-timeout", "30"),
            *("--store", "pg-temp"),
        ],
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert list(report["stores"]) == ["router@postgresql"]
    assert report["stores"]["router@postgresql"].startswith("postgresql://")
    (row,) = report["results"]
    pg = row["router@postgresql"]
    assert pg["acknowledged"] == pg["ok"] == 20
    assert pg["lost"] == 0 and pg["terminal"] == {"completed": 20}
    assert pg["database_cpu_ms_per_request"] > 0
    assert set(row["vs_bare"]) == {"router", "router@postgresql"}
    assert row["vs_bare"]["router"]["added_p99_ms"] == row["added_p99_ms"]
