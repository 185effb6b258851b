"""Run a sweep's cells in parallel on local processes or on Ray, skipping cells already done.

Every cell is a pure function of its parameters (scenario file, overrides, strategy,
seed), so the same cell gives the same row wherever it runs; the cell's folder is
written by whoever ran it (the worker when it shares the output folder, the driver
otherwise) and its ``cell.json`` marks it done.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from . import results as res
from .grid import Cell, SweepSpec

CellFn = Callable[[Cell], res.CellOutput]
Progress = Callable[[int, int], None]


def simulate_cell(cell: Cell) -> res.CellOutput:
    """The shipped cell function: load the scenario with the cell's overrides and run it."""
    from ..sim import load_scenario, run_scenario

    scenario = load_scenario(cell.scenario_path, cell.scenario_overrides())
    t0 = time.perf_counter()
    result = run_scenario(scenario, cell.strategy, cell.seed)
    wall = time.perf_counter() - t0
    return res.CellOutput(result.summary, result.requests, result.gpus, result.timeline, wall)


@dataclass
class CellDone:
    cell_id: str
    rows: pd.DataFrame | None = None  # the tidy rows, when the worker wrote the cell
    output: res.CellOutput | None = None  # the frames, when the driver has to write it
    error: str | None = None


def execute_cell(cell: Cell, cell_fn: CellFn, out: str | None) -> CellDone:
    """Run one cell; write its folder under ``out`` when given, else return its frames."""
    try:
        output = cell_fn(cell)
        rows = res.tidy_rows(cell.columns(), output)
        if out is None:
            return CellDone(cell.cell_id, rows=rows, output=output)
        res.write_cell(out, cell.cell_id, _meta(cell), rows, output)
        return CellDone(cell.cell_id, rows=rows)
    except Exception:  # reported per cell; the sweep goes on
        return CellDone(cell.cell_id, error=traceback.format_exc(limit=8))


def _meta(cell: Cell) -> dict[str, Any]:
    return {
        "cell_id": cell.cell_id,
        "params": cell.params(),
        "columns": cell.columns(),
        "scenario_path": cell.scenario_path,
    }


@dataclass
class SweepRun:
    table: pd.DataFrame
    out: Path
    ran: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    backend: str = "local"
    workers: int = 1


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    workers: int = 1,
    ray_address: str | None = None,
    cell_fn: CellFn | None = None,
    progress: bool = True,
    on_progress: Progress | None = None,
) -> SweepRun:
    """Run every cell of ``spec`` not yet done under ``out``; write the tidy table.

    ``workers``: local processes (1 runs in this process). ``ray_address``: run on
    Ray instead ("local" starts a private local instance with ``workers`` CPUs;
    anything else is handed to ``ray.init(address=...)``). ``cell_fn`` replaces the
    simulator (tests); it must be picklable. ``on_progress(done, total)`` is called
    after each cell (the dashboard's progress bar).
    """
    out = Path(out)
    (out / res.CELLS).mkdir(parents=True, exist_ok=True)
    fn = cell_fn or simulate_cell
    cells = list(dict.fromkeys(spec.cells))  # order kept, duplicates dropped
    todo = [c for c in cells if not res.is_done(out, c.cell_id)]
    run = SweepRun(
        table=pd.DataFrame(),
        out=out,
        skipped=len(cells) - len(todo),
        backend="ray" if ray_address else "local",
        workers=max(1, workers),
    )
    total = len(cells)
    t0 = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=run.skipped,
        desc=spec.name,
        unit="cell",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    if on_progress:
        on_progress(run.skipped, total)

    def finished(done: CellDone, cell: Cell) -> None:
        if done.error is not None:
            run.failed[done.cell_id] = done.error
            bar.write(
                f"cell {done.cell_id} ({cell.strategy}, {cell.scenario}, load={cell.load}, "
                f"seed={cell.seed}) failed:\n{done.error}"
            )
        else:
            if done.output is not None and done.rows is not None:
                res.write_cell(out, cell.cell_id, _meta(cell), done.rows, done.output)
            run.ran += 1
        bar.update(1)
        if run.failed:
            bar.set_postfix(failed=len(run.failed))
        if on_progress:
            on_progress(run.skipped + run.ran + len(run.failed), total)

    try:
        if ray_address:
            _run_ray(todo, fn, out, ray_address, workers, finished)
        elif workers <= 1 or len(todo) <= 1:
            for cell in todo:
                finished(execute_cell(cell, fn, str(out)), cell)
        else:
            _run_processes(todo, fn, out, workers, finished)
    finally:
        bar.close()
    run.wall_s = time.perf_counter() - t0
    run.table = collect(spec, out)
    run.table.to_parquet(out / res.RESULTS, index=False)
    _write_manifest(spec, run)
    return run


def _run_processes(
    todo: Sequence[Cell],
    fn: CellFn,
    out: Path,
    workers: int,
    finished: Callable[[CellDone, Cell], None],
) -> None:
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        pending: dict[Future[CellDone], Cell] = {
            pool.submit(execute_cell, cell, fn, str(out)): cell for cell in todo
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                cell = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # the worker process died
                    result = CellDone(cell.cell_id, error=f"worker process failed: {exc!r}")
                finished(result, cell)


def _run_ray(
    todo: Sequence[Cell],
    fn: CellFn,
    out: Path,
    address: str,
    workers: int,
    finished: Callable[[CellDone, Cell], None],
) -> None:
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(
                num_cpus=max(1, workers),
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING)
        started = True
    try:
        # Workers on this machine write their cell folders themselves; a remote
        # cluster hands the frames back and the driver writes them.
        shared = address == "local" or _same_node(ray)
        remote = ray.remote(num_cpus=1, max_retries=1)(execute_cell)
        fn_ref = ray.put(fn)
        pending = {remote.remote(cell, fn_ref, str(out) if shared else None): cell for cell in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task or its worker died
                    result = CellDone(cell.cell_id, error=f"ray task failed: {exc!r}")
                finished(result, cell)
    finally:
        if started:
            ray.shutdown()


def _same_node(ray: Any) -> bool:
    try:
        return len(ray.nodes()) == 1 and ray.util.get_node_ip_address() == ray.nodes()[0].get(
            "NodeManagerAddress"
        )
    except Exception:
        return False


def collect(spec: SweepSpec, out: str | Path) -> pd.DataFrame:
    """The tidy table of every finished cell of ``spec``, in the spec's order."""
    frames = [
        res.read_cell_rows(out, c.cell_id)
        for c in dict.fromkeys(spec.cells)
        if res.is_done(out, c.cell_id)
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["cell_id", "strategy", "scenario", "load", "seed", "priority"])
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "sweep", spec.name)
    return table


def _write_manifest(spec: SweepSpec, run: SweepRun) -> None:
    manifest = {
        "name": spec.name,
        "description": spec.description,
        "source": spec.source,
        "swept_keys": list(spec.swept_keys),
        "strategies": spec.strategies,
        "scenarios": spec.scenarios,
        "cells": [
            {
                "cell_id": c.cell_id,
                **c.params(),
                "swept": list(c.swept),
                "scenario_path": c.scenario_path,
            }
            for c in dict.fromkeys(spec.cells)
        ],
        "spec": spec.raw,
        "last_run": {
            "ran": run.ran,
            "skipped": run.skipped,
            "failed": sorted(run.failed),
            "wall_s": round(run.wall_s, 3),
            "backend": run.backend,
            "workers": run.workers,
            "cpus": os.cpu_count(),
            "at": time.time(),
        },
    }
    (run.out / res.MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
