"""The SLA gate: run gate scenarios and check their thresholds.

A gate scenario carries ``sla.gate``: which strategies to run, with which seed,
and a list of thresholds ``{metric, priority, max | min}`` over the summary
table (metric names are the summary columns of ``metrics``; priority "1".."5"
or "all"). A NaN metric (nothing to measure) fails a threshold: a gate that
measures nothing must not pass by accident.

By default ``gpu-router gate`` runs every ``scenarios/gate/*.yaml``; files named
on the command line must have an ``sla.gate`` block.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

from ..resources import DataNotFound, scenarios_dir
from . import metrics as m
from .api import SimResult, run_scenario
from .scenario import Scenario, ScenarioError, Threshold


@dataclass(frozen=True)
class Check:
    scenario: str
    strategy: str
    threshold: Threshold
    value: float

    @property
    def passed(self) -> bool:
        t, v = self.threshold, self.value
        if math.isnan(v):
            return False
        return (t.max is None or v <= t.max) and (t.min is None or v >= t.min)

    def describe(self) -> str:
        t = self.threshold
        bound = " and ".join(
            s
            for s in (
                f"<= {t.max:g}" if t.max is not None else "",
                f">= {t.min:g}" if t.min is not None else "",
            )
            if s
        )
        verdict = "ok  " if self.passed else "MISS"
        return (
            f"{verdict} {self.scenario} [{self.strategy}] {t.metric}"
            f"(priority {t.priority}) = {self.value:.4g}, needs {bound}"
        )


def validate_thresholds(scenario: Scenario) -> None:
    gate = scenario.sla.gate
    if gate is None:
        raise ScenarioError(f"{scenario.name}: no sla.gate block; not a gate scenario")
    for i, t in enumerate(gate.thresholds):
        if t.metric not in m.SUMMARY_COLUMNS or t.metric == m.PRIORITY:
            raise ScenarioError(
                f"sla.gate.thresholds.{i}.metric={t.metric!r}: not a summary column"
            )
        if t.priority not in ("1", "2", "3", "4", "5", "all"):
            raise ScenarioError(f"sla.gate.thresholds.{i}.priority={t.priority!r}: 1..5 or all")
        if t.max is None and t.min is None:
            raise ScenarioError(f"sla.gate.thresholds.{i}: set max or min")


def check(result: SimResult) -> list[Check]:
    """The checks of one run against its scenario's thresholds."""
    gate = result.scenario.sla.gate
    assert gate is not None  # noqa: S101 - validated before the run
    out = []
    for t in gate.thresholds:
        value = float(result.row(t.priority)[t.metric])
        out.append(Check(result.scenario.name, result.strategy, t, value))
    return out


def run_gate(scenarios: list[Scenario]) -> list[Check]:
    for sc in scenarios:
        validate_thresholds(sc)
    checks: list[Check] = []
    for sc in scenarios:
        gate = sc.sla.gate
        assert gate is not None  # noqa: S101
        for strategy in gate.strategies:
            checks += check(run_scenario(sc, strategy, gate.seed))
    return checks


def default_gate_files(root: Path | None = None) -> list[Path]:
    """``scenarios/gate/*.yaml`` of ``root`` (default: the current directory), else the
    project's (the packaged copy in a wheel, the checkout's otherwise)."""
    base = root or Path.cwd()
    candidates = [base / "scenarios" / "gate"]
    with contextlib.suppress(DataNotFound):
        candidates.append(scenarios_dir() / "gate")
    for candidate in candidates:
        files = sorted(candidate.glob("*.yaml"))
        if files:
            return files
    return []
