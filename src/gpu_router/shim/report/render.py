"""A :class:`~.summary.PeriodSummary` as Markdown, with PNG charts beside it.

Charts are drawn on :class:`matplotlib.figure.Figure` objects (the Agg canvas, no pyplot and
no display), so a report renders on a server without one.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from matplotlib.figure import Figure

from gpu_router.shim.report.summary import Percentiles, PeriodSummary

STATES = ("completed", "failed", "cancelled")
TITLES = {"day": "daily", "week": "weekly"}


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _s(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def _state_columns(s: PeriodSummary) -> list[str]:
    seen = set(s.by_state)
    return [k for k in STATES if k in seen] + sorted(seen - set(STATES))


def _pct_rows(table: dict[int | str, Percentiles]) -> list[list[str]]:
    return [
        [str(k), str(v.n), _s(v.p50), _s(v.p95), _s(v.p99), _s(v.mean)] for k, v in table.items()
    ]


def markdown(s: PeriodSummary, charts: dict[str, str]) -> str:
    """The report's text; ``charts`` maps a chart's name to its file name (beside it)."""
    cols = _state_columns(s)
    lines = [
        f"# GPU Request Router: {TITLES[s.period]} report",
        "",
        f"Period: {_when(s.start)} to {_when(s.end)}. Requests submitted: {s.total}.",
        "",
        "## Anomalies",
        "",
    ]
    lines += [f"- {a}" for a in s.anomalies] or ["None."]
    lines += ["", "## Requests by status", ""]
    lines += _table(["status", "requests"], [[k, str(s.by_state[k])] for k in cols])
    if "requests" in charts:
        lines += [f"![requests over the period]({charts['requests']})", ""]
    lines += ["## Requests by priority", ""]
    lines += _table(
        ["priority", "total", *cols],
        [
            [str(p), str(sum(c.values())), *(str(c.get(k, 0)) for k in cols)]
            for p, c in s.by_priority.items()
        ],
    )
    lines += ["## Requests by user", ""]
    lines += _table(
        ["user", "total", *cols],
        [
            [u, str(sum(c.values())), *(str(c.get(k, 0)) for k in cols)]
            for u, c in s.by_user.items()
        ],
    )
    head = ["priority", "n", "p50 (s)", "p95 (s)", "p99 (s)", "mean (s)"]
    lines += ["## Queue wait (submission to start)", "", *_table(head, _pct_rows(s.wait))]
    lines += ["## Latency (submission to completion, completed requests)", ""]
    lines += _table(head, _pct_rows(s.latency))
    if "wait" in charts:
        lines += [f"![wait percentiles by priority]({charts['wait']})", ""]
    lines += ["## SLA attainment", ""]
    lines += _table(
        ["priority", "wait target (s)", "ended", "within target", "attainment"],
        [
            [str(x.priority), f"{x.target_s:g}", str(x.ended), str(x.within), _pct(x.attainment)]
            for x in s.sla
        ],
    )
    lines += ["## GPUs", ""]
    lines += _table(
        ["gpu", "requests", "failed", "re-dispatched", "busy (s)", "busy share"],
        [
            [
                g.gpu_id,
                str(g.requests),
                str(g.failed),
                str(g.redispatched),
                f"{g.busy_s:.3f}",
                f"{g.busy_share:.4%}",
            ]
            for g in s.gpus
        ],
    )
    if "gpus" in charts:
        lines += [f"![GPU busy share]({charts['gpus']})", ""]
    lines += [
        "Ejections are not kept in the store: see the `gpu_router_gpu_state` metric and the",
        "GPU alert rules for them. Re-dispatched: requests that needed more than one attempt.",
        "",
        "## Errors",
        "",
    ]
    lines += _table(["error", "requests"], [[m.replace("|", "/"), str(n)] for m, n in s.errors])
    lines += ["## Top users", ""]
    lines += _table(
        ["user", "requests", "completed", "failed", "GPU time (s)"],
        [
            [u.user_id, str(u.requests), str(u.completed), str(u.failed), f"{u.gpu_s:.3f}"]
            for u in s.top_users
        ],
    )
    return "\n".join(lines)


def _requests_chart(s: PeriodSummary) -> Figure:
    fig = Figure(figsize=(9, 3.5), dpi=100)
    ax = fig.subplots()
    fmt = "%H:00" if s.period == "day" else "%m-%d"
    labels = [datetime.fromtimestamp(t, UTC).strftime(fmt) for t, _ in s.buckets]
    bottom = [0] * len(labels)
    for state in _state_columns(s):
        heights = [c.get(state, 0) for _, c in s.buckets]
        ax.bar(range(len(labels)), heights, bottom=bottom, label=state)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(range(len(labels)), labels, rotation=90 if s.period == "day" else 0)
    ax.set_ylabel("requests submitted")
    if s.total:
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def _wait_chart(s: PeriodSummary) -> Figure:
    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    keys = [k for k in s.wait if isinstance(k, int)]
    width = 0.25
    for i, q in enumerate(("p50", "p95", "p99")):
        ax.bar(
            [j + i * width for j in range(len(keys))],
            [getattr(s.wait[k], q) for k in keys],
            width,
            label=q,
        )
    targets = {x.priority: x.target_s for x in s.sla}
    ax.scatter(
        [j + width for j in range(len(keys))],
        [targets[k] for k in keys],
        marker="_",
        s=400,
        color="black",
        label="target",
    )
    ax.set_xticks([j + width for j in range(len(keys))], [f"P{k}" for k in keys])
    ax.set_ylabel("queue wait (s)")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig


def _gpu_chart(s: PeriodSummary) -> Figure:
    fig = Figure(figsize=(6, max(2.0, 0.4 * len(s.gpus) + 1)), dpi=100)
    ax = fig.subplots()
    ax.barh([g.gpu_id for g in s.gpus], [100 * g.busy_share for g in s.gpus])
    ax.set_xlabel("busy share of the period (%)")
    fig.tight_layout()
    return fig


def write_report(s: PeriodSummary, out_dir: Path) -> Path:
    """Write ``report-<period>-<start>.md`` and its PNG charts into ``out_dir``; the path
    of the Markdown file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"report-{s.period}-{datetime.fromtimestamp(s.start, UTC):%Y%m%dT%H%M}"
    charts: dict[str, str] = {}
    figures = [("requests", _requests_chart)]
    if any(k != "all" for k in s.wait):
        figures.append(("wait", _wait_chart))
    if s.gpus:
        figures.append(("gpus", _gpu_chart))
    for name, draw in figures:
        charts[name] = f"{stem}-{name}.png"
        draw(s).savefig(out_dir / charts[name])
    path = out_dir / f"{stem}.md"
    path.write_text(markdown(s, charts))
    return path
