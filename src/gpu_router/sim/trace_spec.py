"""The ``workload.trace`` schema: which file, how its columns map to requests.

A trace is a CSV or JSONL file (one JSON object per line) and a column map
(``TraceColumns``): the arrival time and its unit or date format, the work as a
duration (one column, or ``end - start``) or as prompt and output tokens, and
optionally the model, user, priority, memory and a per-row request count. The two
built-in formats are such maps (``BUILTIN``); ``kind`` selects one and
``columns`` overrides any of its keys. docs/scenarios.md documents every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ARRIVAL_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
DURATION_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TraceColumns(_Strict):
    """Column names (and their units) of a trace file; unset optional columns are drawn
    from the synthetic mix (``workload.users``, ``priorities``, ``models``)."""

    arrival: str | None = None
    arrival_unit: Literal["s", "ms", "us", "ns", "datetime"] = "s"
    arrival_format: str | None = None  # datetime: strftime pattern; default "mixed"
    duration: str | None = None
    start: str | None = None  # duration = end - start
    end: str | None = None
    duration_unit: Literal["s", "ms", "us"] = "s"
    duration_on: Literal["fleet_mean", "H100"] = "fleet_mean"
    prompt_tokens: str | None = None
    output_tokens: str | None = None
    model: str | None = None
    user: str | None = None
    priority: str | None = None
    priority_map: dict[str, int] | None = None
    memory: str | None = None
    memory_unit_mb: float = Field(default=1.0, gt=0)
    memory_clip: tuple[float, float] | None = None  # in the column's unit, before scaling
    count: str | None = None  # each row is this many requests; rows below 1 are dropped
    adapters: str | None = None  # adapters (LoRA) the request loads before it runs

    @property
    def work_kind(self) -> str:
        if self.prompt_tokens or self.output_tokens:
            return "tokens"
        return "span" if self.start or self.end else "duration"

    def check(self) -> None:
        """One work source, complete; raises ValueError naming the keys."""
        if not self.arrival:
            raise ValueError("trace.columns.arrival: name the arrival-time column")
        sources = [
            bool(self.duration),
            bool(self.start or self.end),
            bool(self.prompt_tokens or self.output_tokens),
        ]
        if sum(sources) != 1:
            raise ValueError(
                "trace.columns: name the work as exactly one of duration, start + end,"
                f" prompt_tokens + output_tokens (got {self.model_dump(exclude_defaults=True)})"
            )
        if (self.start or self.end) and not (self.start and self.end):
            raise ValueError("trace.columns: start and end go together (duration = end - start)")
        if (self.prompt_tokens or self.output_tokens) and not (
            self.prompt_tokens and self.output_tokens
        ):
            raise ValueError("trace.columns: prompt_tokens and output_tokens go together")
        for p in (self.priority_map or {}).values():
            if not 1 <= p <= 5:
                raise ValueError(f"trace.columns.priority_map: {p!r} is not a priority 1..5")
        if self.memory_clip is not None and not 0 <= self.memory_clip[0] <= self.memory_clip[1]:
            raise ValueError(
                f"trace.columns.memory_clip={list(self.memory_clip)!r}: need 0 <= lo <= hi"
            )


#: the built-in formats as column maps (their default files are under data/traces/)
BUILTIN: dict[str, tuple[str, dict[str, object], bool]] = {
    # Azure LLM conversation: wall-clock stamps, work from tokens
    "azure_llm": (
        "traces/azure_llm_2023_conv.csv",
        {
            "arrival": "TIMESTAMP",
            "arrival_unit": "datetime",
            "arrival_format": "mixed",
            "prompt_tokens": "ContextTokens",
            "output_tokens": "GeneratedTokens",
        },
        False,
    ),
    # Alibaba GPU-v2023 pods: a pod of n GPUs is n requests, duration on the fleet's
    # mean GPU, gpu_milli as a share of 15,000 MB, QoS as priority; pods never
    # scheduled or without positive duration are skipped
    "alibaba_pods": (
        "traces/alibaba_gpu_v2023_pods.csv",
        {
            "arrival": "creation_time",
            "start": "scheduled_time",
            "end": "deletion_time",
            "duration_on": "fleet_mean",
            "count": "num_gpu",
            "memory": "gpu_milli",
            "memory_unit_mb": 15.0,
            "memory_clip": (1.0, 1000.0),
            "priority": "qos",
            "priority_map": {"Guaranteed": 5, "LS": 4, "Burstable": 2, "BE": 1},
        },
        True,
    ),
}


class TraceSpec(_Strict):
    kind: Literal["azure_llm", "alibaba_pods"] | None = None
    path: str | None = None
    format: Literal["csv", "jsonl"] | None = None  # default: from the file suffix
    columns: TraceColumns | None = None
    skip_invalid: bool | None = None  # drop rows with missing/bad arrival or work
    time_scale: float = Field(default=1.0, gt=0)
    duration_scale: float = Field(default=1.0, gt=0)
    start_s: float = Field(default=0.0, ge=0)
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check(self) -> TraceSpec:
        if self.kind is None and (self.columns is None or self.path is None):
            raise ValueError("trace: set kind (azure_llm, alibaba_pods), or path and columns")
        self.resolved_columns().check()
        return self

    def resolved_columns(self) -> TraceColumns:
        """The built-in map of ``kind`` with the keys ``columns`` sets on top."""
        base = dict(BUILTIN[self.kind][1]) if self.kind else {}
        if self.columns is not None:
            base.update(self.columns.model_dump(exclude_unset=True))
        return TraceColumns.model_validate(base)

    def skips_invalid(self) -> bool:
        if self.skip_invalid is not None:
            return self.skip_invalid
        return BUILTIN[self.kind][2] if self.kind else False

    def file(self, data_dir: Path) -> Path:
        """``path`` as given (relative: to the working directory, else to the data
        directory), or the built-in file of ``kind``."""
        if not self.path:
            return data_dir / BUILTIN[str(self.kind)][0]
        path = Path(self.path)
        if not path.is_absolute() and not path.exists() and (data_dir / path).exists():
            return data_dir / path
        return path

    def file_format(self, path: Path) -> str:
        if self.format:
            return self.format
        return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"
