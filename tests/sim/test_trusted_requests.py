"""The engine builds requests without per-row validation only when it has checked the
whole workload once (``Request.trusted``); a workload that fails the check gets the
validating constructor, and with it the same error as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpu_router.policy.errors import InvalidValue
from gpu_router.sim import api, parse_scenario, run_scenario
from gpu_router.sim.engine import Engine

SCENARIO = {"horizon_s": 20, "fleet": {"count": 2}, "workload": {"load": 0.5}}


def test_valid_workload_takes_the_trusted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    run = Engine.run

    def spy(self: Engine) -> None:
        seen.append(self._valid)
        run(self)

    monkeypatch.setattr(Engine, "run", spy)
    res = run_scenario(parse_scenario(SCENARIO), "round-robin", 1)
    assert seen == [True] and len(res.requests) > 10


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda wl: {"priority": np.where(np.arange(len(wl)) == 3, 7, wl.priority)}, "priority"),
        (lambda wl: {"priority": wl.priority.astype(float)}, "priority"),
        (lambda wl: {"user_names": ("", *wl.user_names[1:])}, "user_id"),
    ],
)
def test_invalid_rows_still_raise_at_arrival(
    monkeypatch: pytest.MonkeyPatch, change: object, field: str
) -> None:
    build = api.build_workload

    def broken(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        wl = build(*args, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(wl, **change(wl))  # type: ignore[operator]

    monkeypatch.setattr(api, "build_workload", broken)
    with pytest.raises(InvalidValue) as err:
        run_scenario(parse_scenario(SCENARIO), "round-robin", 1)
    assert err.value.field == field
