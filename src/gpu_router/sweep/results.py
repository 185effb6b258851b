"""The on-disk layout of a sweep result directory, and its readers and writers.

```
DIR/results.parquet          tidy: one row per cell and priority, the cell's parameters as columns
DIR/stats.parquet            mean and 95% t-interval across seeds (see stats.py)
DIR/manifest.json            the sweep: name, source, cells and their parameters, timings
DIR/cells/<cell_id>/         one finished cell: cell.json (written last: the "done" mark),
                             summary.parquet, requests.parquet, gpus.parquet, timeline.parquet
DIR/figures/                 PNG and SVG plots (plots.py, record_plots.py)
```
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..policy.errors import InvalidValue

RESULTS = "results.parquet"
STATS = "stats.parquet"
MANIFEST = "manifest.json"
CELLS = "cells"
FRAMES = ("summary", "requests", "gpus", "timeline")
#: Columns that measure the machine, not the model: excluded when comparing runs.
NONDETERMINISTIC = ("overhead_us_mean", "overhead_us_p99", "cell_wall_s")


@dataclass
class CellOutput:
    """What one cell produces: the simulator's frames and the wall time it took."""

    summary: pd.DataFrame
    requests: pd.DataFrame
    gpus: pd.DataFrame
    timeline: pd.DataFrame
    wall_s: float = 0.0


def cell_dir(out: str | Path, cell_id: str) -> Path:
    return Path(out) / CELLS / cell_id


def is_done(out: str | Path, cell_id: str) -> bool:
    return (cell_dir(out, cell_id) / "cell.json").is_file()


def tidy_rows(columns: Mapping[str, Any], output: CellOutput) -> pd.DataFrame:
    """The summary rows of a cell with the cell's parameters prepended as columns."""
    summary = output.summary.reset_index(drop=True).copy()
    if "priority" in summary:
        summary["priority"] = summary["priority"].astype(str)
    params = pd.DataFrame([dict(columns)] * len(summary))
    rows = pd.concat([params, summary.drop(columns=[c for c in params if c in summary])], axis=1)
    rows["cell_wall_s"] = float(output.wall_s)
    return rows


def write_cell(
    out: str | Path, cell_id: str, meta: Mapping[str, Any], rows: pd.DataFrame, output: CellOutput
) -> Path:
    """Write one cell atomically: a temporary folder renamed into place once complete."""
    final = cell_dir(out, cell_id)
    tmp = final.parent / f".tmp-{cell_id}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        rows.to_parquet(tmp / "summary.parquet", index=False)
        for name in FRAMES[1:]:
            frame = getattr(output, name)
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        info = {
            **meta,
            "wall_s": output.wall_s,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "finished_at": time.time(),
        }
        (tmp / "cell.json").write_text(json.dumps(info, indent=1, default=str))
        if final.exists():  # a concurrent run finished the same cell first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_cell_rows(out: str | Path, cell_id: str) -> pd.DataFrame:
    return pd.read_parquet(cell_dir(out, cell_id) / "summary.parquet")


def load_cell(out: str | Path, cell_id: str) -> dict[str, Any]:
    """A finished cell's frames (summary, requests, gpus, timeline) and its cell.json."""
    d = cell_dir(out, cell_id)
    if not (d / "cell.json").is_file():
        raise InvalidValue("cell_id", cell_id, f"no finished cell under {d.parent}")
    cell: dict[str, Any] = {"meta": json.loads((d / "cell.json").read_text())}
    for name in FRAMES:
        path = d / f"{name}.parquet"
        cell[name] = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
    return cell


def load_results(out: str | Path) -> pd.DataFrame:
    """The tidy table of a sweep directory (``DIR/results.parquet``)."""
    path = Path(out) / RESULTS
    if not path.is_file():
        raise InvalidValue("results", str(out), f"no {RESULTS} here; run `gpu-router sweep` first")
    return pd.read_parquet(path)


def load_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def is_result_dir(out: str | Path) -> bool:
    return (Path(out) / RESULTS).is_file()
