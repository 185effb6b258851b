"""A day's report rendered from a real run's store: the service over a virtual fleet with a
SQLite journal (its writer process), requests submitted and finished, then
``gpu-router report`` on that file; its numbers are checked against what was submitted."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpu_router.cli import main
from tests.shim.app_helpers import H_ALICE, H_BOB, body, running, wait_state

pytestmark = pytest.mark.timeout(60)

FAST = {"simulate": {"duration_ms": 30}}


def submitted() -> list[tuple[str, dict, dict, str]]:
    """(request_id, headers, body, final state) of the run."""
    out = []
    for i in range(4):
        out.append((f"a3-{i}", H_ALICE, body(request_id=f"a3-{i}", payload=FAST), "completed"))
    fail = {"simulate": {"duration_ms": 10, "fail": "model crashed"}}
    out.append(("a5-f", H_ALICE, body(request_id="a5-f", priority=5, payload=fail), "failed"))
    for i in range(2):
        b = body(request_id=f"b1-{i}", user_id="bob", priority=1, payload=FAST)
        out.append((f"b1-{i}", H_BOB, b, "completed"))
    return out


async def run_service(journal: Path) -> None:
    async with running(str(journal), n_gpus=2, error_handler={"max_retries": 0}) as (c, _app, _f):
        for _rid, headers, b, _state in submitted():
            r = await c.post("/api/v1/route", json=b, headers=headers)
            assert r.status_code == 200, r.text
        long = body(
            request_id="b4-c",
            user_id="bob",
            priority=4,
            payload={"simulate": {"duration_ms": 5000}},
        )
        assert (await c.post("/api/v1/route", json=long, headers=H_BOB)).status_code == 200
        await wait_state(c, "b4-c", {"processing"}, H_BOB)
        for _ in range(500):  # its start time is recorded (the report counts its wait)
            r = await c.get("/api/v1/requests/b4-c", headers=H_BOB)
            if r.json()["data"]["start_time"] is not None:
                break
            await asyncio.sleep(0.01)
        r = await c.delete("/api/v1/requests/b4-c", headers=H_BOB)
        assert r.json()["data"]["cancelled"] is True
        for rid, headers, _b, state in submitted():
            assert (await wait_state(c, rid, {state}, headers))["status"] == state


def table(md: str, title: str) -> dict[str, list[str]]:
    """The rows of the table under ``## title``, by first cell."""
    section = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {c[0]: c[1:] for c in cells}


def test_a_days_report_from_a_real_runs_store(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    hour = datetime.fromtimestamp(time.time() - 60, UTC).replace(minute=0, second=0, microsecond=0)
    asyncio.run(run_service(journal))
    (tmp_path / "config.yaml").write_text("queue:\n  max_wait_s: {3: 30}\n")
    out = tmp_path / "reports"
    args = ["report", "--period", "day", "--since", hour.isoformat(), "--store", str(journal)]
    assert main([*args, "--out", str(out), "--config", str(tmp_path / "config.yaml")]) == 0

    md_files = list(out.glob("report-day-*.md"))
    assert [p.name for p in md_files] == [f"report-day-{hour:%Y%m%dT%H%M}.md"]
    md = md_files[0].read_text()
    assert "Requests submitted: 8." in md
    assert table(md, "Requests by status") == {
        "completed": ["6"],
        "failed": ["1"],
        "cancelled": ["1"],
    }
    assert table(md, "Requests by priority") == {
        "5": ["1", "0", "1", "0"],
        "4": ["1", "0", "0", "1"],
        "3": ["4", "4", "0", "0"],
        "1": ["2", "2", "0", "0"],
    }
    assert table(md, "Requests by user") == {
        "alice": ["5", "4", "1", "0"],
        "bob": ["3", "2", "0", "1"],
    }
    waits = table(md, "Queue wait (submission to start)")
    assert {k: v[0] for k, v in waits.items()} == {
        "all": "8",
        "5": "1",
        "4": "1",
        "3": "4",
        "1": "2",
    }
    lat = table(md, "Latency (submission to completion, completed requests)")
    assert {k: v[0] for k, v in lat.items()} == {"all": "6", "3": "4", "1": "2"}
    assert all(float(v[2]) >= 0.03 for k, v in lat.items())  # p95 >= the 30 ms run time
    sla = table(md, "SLA attainment")
    # targets: the config's 30 s for priority 3, the defaults (queue.max_wait_s) otherwise
    assert sla == {
        "5": ["30", "1", "0", "0.0%"],
        "4": ["60", "0", "0", "-"],
        "3": ["30", "4", "4", "100.0%"],
        "1": ["600", "2", "2", "100.0%"],
    }
    gpus = table(md, "GPUs")
    assert set(gpus) <= {"gpu-0", "gpu-1"}
    assert sum(int(v[0]) for v in gpus.values()) == 8
    assert sum(int(v[1]) for v in gpus.values()) == 1
    assert all(float(v[3]) > 0 for v in gpus.values())
    assert table(md, "Errors") == {"model crashed": ["1"]}
    top = table(md, "Top users")
    assert {u: v[:3] for u, v in top.items()} == {"alice": ["5", "4", "1"], "bob": ["3", "2", "0"]}
    anomalies = md.split("## Anomalies\n", 1)[1].split("\n## ", 1)[0]
    assert "priority 5: SLA attainment 0.0% is under 95%" in anomalies
    assert "fleet: 14.3% of ended requests failed" in anomalies  # 1 of 7 > 10%
    for png in re.findall(r"\]\((report-[^)]+\.png)\)", md):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(re.findall(r"\.png\)", md)) == 3

    # the week from the same hour holds the same requests; the day before holds none
    week = ["report", "--period", "week", "--since", hour.isoformat(), "--store", str(journal)]
    assert main([*week, "--out", str(out), "--config", str(tmp_path / "config.yaml")]) == 0
    week_md = (out / f"report-week-{hour:%Y%m%dT%H%M}.md").read_text()
    assert week_md.startswith("# GPU Request Router: weekly report")
    assert table(week_md, "Requests by status") == table(md, "Requests by status")
    before = (hour - timedelta(days=1)).isoformat()
    day_before = ["report", "--since", before, "--store", str(journal), "--out", str(out)]
    assert main(day_before) == 0
    empty = (out / f"report-day-{hour - timedelta(days=1):%Y%m%dT%H%M}.md").read_text()
    assert "Requests submitted: 0." in empty and table(empty, "Requests by status") == {}


def test_the_report_names_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--store", str(tmp_path / "none.sqlite3"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
