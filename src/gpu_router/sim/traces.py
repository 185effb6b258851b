"""Trace replay: any CSV or JSONL file through a column map (trace_spec.TraceColumns).

Attribution of the bundled traces (keep it where results are cited):
- ``azure_llm_2023_conv.csv``: Azure Public Dataset, AzureLLMInferenceTrace_conv
  (Patel et al., "Splitwise: Efficient generative LLM inference using phase
  splitting", ISCA 2024), CC-BY-4.0.
- ``alibaba_gpu_v2023_pods.csv``: Alibaba cluster-trace-gpu-v2023 (Weng et al.,
  "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
  Gradient Descent", USENIX ATC 2023).

pandas parses the file; every refusal is one line naming the file, the column (and
the ``trace.columns`` key that names it) and, for a bad value, the row and the value.
Arrival times are seconds from the file's first arrival (datetimes: from the
earliest stamp); an event at trace time t arrives at ``(t - start_s) / time_scale``.
Work: a duration (x ``duration_scale``, taken as seconds on the fleet's mean GPU or
on an H100, ``duration_on``), or tokens through the calibrated LLM model
(service_model.llm_work). Optional columns replace the synthetic draw of model,
user, priority and memory for the rows where they hold a value.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..resources import data_dir
from .scenario import ScenarioError, WorkloadSpec
from .service_model import ServiceModel
from .trace_spec import ARRIVAL_UNITS, DURATION_UNITS, TraceColumns, TraceSpec
from .workload import Workload, mix


def _show(value: object) -> str:
    """A cell as the user wrote it: ``'x'``, ``-1``, or ``(empty)``."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return "(empty)"
    item = getattr(value, "item", None)
    return repr(item() if callable(item) else value)


class _Table:
    """A parsed trace file and the helpers that refuse its bad values in one line."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt
        try:
            self.df = pd.read_json(path, lines=True) if fmt == "jsonl" else pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise self.error("empty file (no header)") from None
        except (OSError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise self.error(f"cannot read as {fmt}: {first}") from None
        if self.df.empty:
            raise self.error("no rows")

    def error(self, msg: str) -> ScenarioError:
        return ScenarioError(f"workload.trace.path={str(self.path)!r}: {msg}")

    def where(self, i: int) -> str:
        line = i + 1 if self.fmt == "jsonl" else i + 2  # CSV: line 1 is the header
        return f"row {i + 1} (line {line})"

    def column(self, key: str, name: str) -> pd.Series:
        if name not in self.df.columns:
            cols = ", ".join(map(str, self.df.columns[:12]))
            raise self.error(f"no column {name!r} (trace.columns.{key}); its columns: {cols}")
        return self.df[name]

    def numbers(self, key: str, name: str) -> np.ndarray:
        """The column as floats; a value present but not a number is refused (NaN: missing)."""
        raw = self.column(key, name)
        if pd.api.types.is_bool_dtype(raw) or not pd.api.types.is_numeric_dtype(raw):
            num = pd.to_numeric(raw, errors="coerce")
            self._refuse(raw, num.isna() & raw.notna(), name, "is not a number")
            raw = num
        return np.asarray(raw.to_numpy(dtype=float))

    def _refuse(self, raw: pd.Series, bad: pd.Series | np.ndarray, name: str, why: str) -> None:
        idx = np.flatnonzero(np.asarray(bad))
        if len(idx):
            i = int(idx[0])
            more = f" ({len(idx) - 1} more rows like it)" if len(idx) > 1 else ""
            raise self.error(f"column {name!r} {self.where(i)}: {_show(raw.iloc[i])} {why}{more}")

    def arrivals(self, cols: TraceColumns) -> np.ndarray:
        """Seconds from the first arrival of the file (NaN where missing)."""
        name = str(cols.arrival)
        if cols.arrival_unit != "datetime":
            v = self.numbers("arrival", name) / ARRIVAL_UNITS[cols.arrival_unit]
            if np.isnan(v).all():
                raise self.error(f"column {name!r} (trace.columns.arrival) holds no time")
            return v - np.nanmin(v)
        raw = self.column("arrival", name)
        fmt = cols.arrival_format or "mixed"
        try:
            stamps = pd.to_datetime(raw, format=fmt, errors="coerce")
        except (TypeError, ValueError) as err:
            raise self.error(f"trace.columns.arrival_format={fmt!r}: {err}") from None
        self._refuse(raw, stamps.isna() & raw.notna(), name, f"is not a date ({fmt})")
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert(None)
        t = (stamps - stamps.min()).dt.total_seconds()
        return np.asarray(t.to_numpy(dtype=float))

    def check_missing(
        self, values: np.ndarray, key: str, name: str, skip: bool, work: bool = False
    ) -> np.ndarray:
        """Rows to keep: a missing or negative value is refused, or dropped with ``skip``
        (which also drops zero ``work``)."""
        bad = np.isnan(values) | (values < 0)
        if skip:
            return np.asarray(~bad & (values > 0) if work else ~bad)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raw = self.df[name].iloc[i] if name in self.df.columns else values[i]
            why = "is missing" if np.isnan(values[i]) else "is negative"
            raise self.error(
                f"column {name!r} {self.where(i)}: {_show(raw)} {why} (trace.columns.{key};"
                " workload.trace.skip_invalid: true drops such rows)"
            )
        return np.ones(len(values), dtype=bool)


def _work(
    tab: _Table, cols: TraceColumns, service: ServiceModel, skip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row work before scaling, and the rows whose work is valid (refused or skipped)."""
    if cols.work_kind == "tokens":
        p = tab.numbers("prompt_tokens", str(cols.prompt_tokens))
        o = tab.numbers("output_tokens", str(cols.output_tokens))
        ok = tab.check_missing(p, "prompt_tokens", str(cols.prompt_tokens), skip)
        ok &= tab.check_missing(o, "output_tokens", str(cols.output_tokens), skip)
        return service.llm_work(p, o), ok
    unit = DURATION_UNITS[cols.duration_unit]
    if cols.work_kind == "span":
        s, e = tab.numbers("start", str(cols.start)), tab.numbers("end", str(cols.end))
        ok = tab.check_missing(s, "start", str(cols.start), skip)
        work = (e - s) / unit
        return work, ok & tab.check_missing(work, "end", str(cols.end), skip, work=True)
    work = tab.numbers("duration", str(cols.duration)) / unit
    return work, tab.check_missing(work, "duration", str(cols.duration), skip, work=True)


def _window(arrival: np.ndarray, tr: TraceSpec, horizon_s: float) -> np.ndarray:
    """Indices of trace events that arrive in [0, horizon), capped at ``limit``."""
    keep = np.flatnonzero((arrival >= 0) & (arrival < horizon_s))
    keep = keep[np.argsort(arrival[keep], kind="stable")]
    return keep[: tr.limit] if tr.limit else keep


def read_trace(
    rng: np.random.Generator,
    spec: WorkloadSpec,
    service: ServiceModel,
    mean_speed: float,
    horizon_s: float,
) -> Workload:
    """The workload of ``spec.trace`` over [0, horizon_s)."""
    tr = spec.trace
    assert tr is not None  # noqa: S101 - caller checks
    cols = tr.resolved_columns()
    path = tr.file(data_dir())
    tab = _Table(path, tr.file_format(path))
    skip = tr.skips_invalid()
    t = tab.arrivals(cols)
    ok = tab.check_missing(t, "arrival", str(cols.arrival), skip)
    work, work_ok = _work(tab, cols, service, skip)
    ok &= work_ok
    reps = np.ones(len(t), dtype=np.int64)
    if cols.count:
        n = tab.numbers("count", cols.count)
        reps = np.where(np.isnan(n), 1, np.maximum(n, 0)).astype(np.int64)
    rows = np.repeat(np.flatnonzero(ok), reps[ok])
    arrival_all = (t[rows] - tr.start_s) / tr.time_scale
    keep = _window(arrival_all, tr, horizon_s)
    if len(keep) == 0:
        span = f"{np.nanmin(t):g}..{np.nanmax(t):g} s" if np.isfinite(t).any() else "no time"
        raise tab.error(
            f"no request arrives in the window (workload.trace.start_s={tr.start_s:g},"
            f" time_scale={tr.time_scale:g}, horizon_s={horizon_s:g}); the trace spans {span}"
        )
    rows = rows[keep]
    speed = mean_speed if cols.work_kind != "tokens" and cols.duration_on == "fleet_mean" else 1.0
    scaled = work[rows] * tr.duration_scale
    base = scaled * speed if cols.work_kind != "tokens" else scaled
    wl = mix(rng, spec, arrival_all[keep], base, len(keep) / horizon_s)
    return _columns(tab, cols, spec, wl, base, rows)


def _columns(
    tab: _Table,
    cols: TraceColumns,
    spec: WorkloadSpec,
    wl: Workload,
    base: np.ndarray,
    rows: np.ndarray,
) -> Workload:
    """Replace the synthetic model, user, priority and memory where the trace has them;
    the adapter counts (``adapters``; missing: 0)."""
    if cols.model:
        wl = _models(tab, cols.model, spec, wl, base, rows)
    if cols.user:
        raw = tab.column("user", cols.user).iloc[rows]
        have = raw.notna().to_numpy()
        names, codes = np.unique(raw[have].astype(str).to_numpy(), return_inverse=True)
        user = wl.user.copy()
        user[have] = len(wl.user_names) + codes
        wl = replace(wl, user=user, user_names=wl.user_names + tuple(names))
    if cols.priority:
        wl = replace(wl, priority=_priorities(tab, cols, wl.priority, rows))
    if cols.memory:
        mem = tab.numbers("memory", cols.memory)[rows]
        lo, hi = cols.memory_clip or (0.0, np.inf)
        have = ~np.isnan(mem)
        memory = wl.memory_mb.copy()
        memory[have] = np.clip(mem[have], lo, hi) * cols.memory_unit_mb
        wl = replace(wl, memory_mb=memory)
    if cols.adapters:
        k = tab.numbers("adapters", cols.adapters)[rows]
        wl = replace(wl, adapters=np.where(np.isnan(k), 0, np.maximum(k, 0)).astype(np.int64))
    return wl


def _priorities(tab: _Table, cols: TraceColumns, drawn: np.ndarray, rows: np.ndarray) -> np.ndarray:
    name = str(cols.priority)
    raw = tab.column("priority", name)
    pmap = cols.priority_map
    if pmap is not None:
        mapped = raw.map(lambda v: pmap.get(str(v)) if pd.notna(v) else None)
        tab._refuse(raw, mapped.isna() & raw.notna(), name, "is not in trace.columns.priority_map")
        values = mapped.to_numpy(dtype=float)
    else:
        values = tab.numbers("priority", name)
        bad = ~np.isnan(values) & ~np.isin(values, [1, 2, 3, 4, 5])
        tab._refuse(raw, bad, name, "is not a priority 1..5")
    picked = values[rows]
    return np.where(np.isnan(picked), drawn, picked).astype(np.int8)


def _models(
    tab: _Table, name: str, spec: WorkloadSpec, wl: Workload, base: np.ndarray, rows: np.ndarray
) -> Workload:
    """Trace model ids: a ``workload.models`` entry of that id gives memory, CC, work scale
    and weights; other ids are models with none of these (memory from the trace)."""
    raw = tab.column("model", name).iloc[rows]
    have = raw.notna().to_numpy()
    ids = list(wl.model_ids)
    known = {m.id: m for m in spec.models}
    index = {m: i for i, m in enumerate(ids)}
    for m in pd.unique(raw[have].astype(str)):
        index.setdefault(str(m), len(index))
    extra = [m for m in index if m not in ids]
    model_idx = wl.model_idx.copy()
    model_idx[have] = [index[str(m)] for m in raw[have]]
    all_ids = ids + extra
    specs = [known.get(m) for m in all_ids]
    mscale = np.array([s.work_scale if s else 1.0 for s in specs])[model_idx]
    tscale = np.array([spec.types[t].work_scale for t in wl.type_names])[wl.type_idx]
    work = base * tscale * mscale
    return replace(
        wl,
        model_idx=model_idx,
        work=work,
        declared_ms=work * 1e3,
        memory_mb=np.array([s.memory_mb if s else 0.0 for s in specs])[model_idx],
        model_ids=tuple(all_ids),
        model_min_cc=tuple(s.min_compute_capability if s else None for s in specs),
        model_weights_mb=tuple(s.weights_mb if s else 0.0 for s in specs),
    )
