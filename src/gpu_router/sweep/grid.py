"""Sweep grids: parse ``sweeps/*.yaml`` into cells (strategy x scenario x load x seed x keys).

A sweep file::

    name: strategies_vs_load
    description: free text
    scenarios: [steady, burst]          # names in scenarios/ (or paths to YAML files)
    strategies: [hybrid-seed, round-robin]
    loads: [0.5, 0.7, 0.9]              # sets workload.load; omit to keep the scenario's
    seeds: [1, 2, 3]                    # or a count: `seeds: 3` means 1, 2, 3
    overrides: {workload.duration_s: 600}   # applied to every cell
    grid: {fleet.count: [10, 100]}      # further scenario keys, crossed with the rest

Every cell is identified by a stable hash of its parameters and of the scenario
file's bytes, so a re-run skips what is done and an edited scenario is re-run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..policy.errors import InvalidValue
from ..resources import find_named

LOAD_KEY = "workload.load"
TOP_LEVEL_KEYS = frozenset(
    {"name", "description", "scenarios", "strategies", "loads", "seeds", "overrides", "grid"}
)
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Cell:
    """One simulation run of the grid; ``overrides`` are the swept and fixed scenario keys."""

    strategy: str
    scenario: str
    scenario_path: str
    scenario_digest: str
    load: float | None
    seed: int
    overrides: tuple[tuple[str, Scalar], ...] = ()
    swept: tuple[str, ...] = ()  # the override keys the grid varies (become table columns)

    @property
    def cell_id(self) -> str:
        return cell_id(self.params())

    def params(self) -> dict[str, Any]:
        """The parameters that define the run (and its id), JSON-serialisable."""
        return {
            "strategy": self.strategy,
            "scenario": self.scenario,
            "scenario_digest": self.scenario_digest,
            "load": self.load,
            "seed": self.seed,
            "overrides": dict(self.overrides),
        }

    def scenario_overrides(self) -> dict[str, Scalar]:
        """The dotted-key overrides handed to ``load_scenario``, load included."""
        out: dict[str, Scalar] = dict(self.overrides)
        if self.load is not None:
            out[LOAD_KEY] = self.load
        return out

    def columns(self) -> dict[str, Any]:
        """The cell's parameters as columns of the tidy table."""
        cols: dict[str, Any] = {
            "cell_id": self.cell_id,
            "strategy": self.strategy,
            "scenario": self.scenario,
            "load": math.nan if self.load is None else float(self.load),
            "seed": self.seed,
        }
        for key in self.swept:
            cols[key] = dict(self.overrides)[key]
        return cols


def cell_id(params: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit id: sha256 of the canonical JSON of the parameters."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    cells: tuple[Cell, ...]
    swept_keys: tuple[str, ...] = ()
    source: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(c.strategy for c in self.cells))

    @property
    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(c.scenario for c in self.cells))


def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if source else key


def _as_list(value: Any, key: str, source: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InvalidValue(_where(source, key), value, "must not be empty")
    return items


def _names(value: Any, key: str, source: str) -> list[str]:
    items = _as_list(value, key, source)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise InvalidValue(_where(source, f"{key}[{i}]"), item, "must be a non-empty string")
    if len(set(items)) != len(items):
        raise InvalidValue(_where(source, key), value, "has duplicates")
    return items


def _loads(value: Any, source: str) -> list[float | None]:
    if value is None:
        return [None]
    out: list[float | None] = []
    for i, item in enumerate(_as_list(value, "loads", source)):
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 < item < 10:
            raise InvalidValue(_where(source, f"loads[{i}]"), item, "must be a number in (0, 10)")
        out.append(float(item))
    return out


def _seeds(value: Any, source: str) -> list[int]:
    if value is None:
        return [1]
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise InvalidValue(_where(source, "seeds"), value, "a count must be >= 1")
        return list(range(1, value + 1))
    items = _as_list(value, "seeds", source)
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise InvalidValue(_where(source, f"seeds[{i}]"), item, "must be an integer >= 0")
    if len(set(items)) != len(items):
        raise InvalidValue(_where(source, "seeds"), value, "has duplicates")
    return items


def _scalar_map(value: Any, key: str, source: str, lists: bool) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidValue(_where(source, key), value, "must be a mapping of dotted keys")
    out: dict[str, Any] = {}
    for k, v in value.items():
        where = _where(source, f"{key}.{k}")
        if not isinstance(k, str) or not k or k.startswith(".") or k.endswith("."):
            raise InvalidValue(where, k, "must be a dotted scenario key such as fleet.count")
        if k == LOAD_KEY:
            raise InvalidValue(where, v, "use the top-level `loads` list for the load")
        vals = _as_list(v, f"{key}.{k}", source) if lists else [v]
        for item in vals:
            if not isinstance(item, str | int | float | bool) and item is not None:
                raise InvalidValue(where, item, "must be a scalar (string, number, bool)")
        out[k] = vals if lists else v
    return out


def resolve_scenario(name: str, base: Path | None = None) -> Path:
    """The YAML file of scenario ``name``: a path, or a name in scenarios/ (beside the
    sweep file ``base``, in ./scenarios, then the project's: packaged or the checkout's)."""
    extra = [base, base.parent / "scenarios", base / "scenarios"] if base else []
    found = find_named(name, "scenarios", extra)
    if found is None:
        raise InvalidValue("scenarios", name, "no such scenario file (looked in scenarios/)")
    return found


def parse_sweep(
    data: Mapping[str, Any],
    *,
    source: str = "",
    base: Path | None = None,
    known_strategies: Iterable[str] | None = None,
    check: Callable[[Path, Mapping[str, Any]], object] | bool | None = None,
) -> SweepSpec:
    """Validate a sweep mapping and expand it into cells; errors name the key.

    ``known_strategies`` defaults to the policy registry; ``check(path, overrides)``
    (by default ``gpu_router.sim.load_scenario`` where importable) is called once per
    scenario and override combination so that a bad scenario key fails before any run;
    ``check=False`` skips that.
    """
    if not isinstance(data, Mapping):
        raise InvalidValue(source or "sweep", data, "must be a mapping")
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise InvalidValue(
            _where(source, unknown[0]),
            data[unknown[0]],
            f"unknown key; known: {sorted(TOP_LEVEL_KEYS)}",
        )
    for required in ("scenarios", "strategies"):
        if required not in data:
            raise InvalidValue(_where(source, required), None, "is required")
    scenarios = _names(data["scenarios"], "scenarios", source)
    strategies = _names(data["strategies"], "strategies", source)
    if known_strategies is None:
        from ..policy.strategies import ALIASES, STRATEGIES

        known_strategies = set(STRATEGIES) | set(ALIASES)
    known = set(known_strategies)
    for i, s in enumerate(strategies):
        if s not in known:
            raise InvalidValue(
                _where(source, f"strategies[{i}]"), s, f"unknown strategy; known: {sorted(known)}"
            )
    loads = _loads(data.get("loads"), source)
    seeds = _seeds(data.get("seeds"), source)
    fixed = _scalar_map(data.get("overrides"), "overrides", source, lists=False)
    grid = _scalar_map(data.get("grid"), "grid", source, lists=True)
    clash = sorted(set(fixed) & set(grid))
    if clash:
        raise InvalidValue(
            _where(source, f"grid.{clash[0]}"),
            grid[clash[0]],
            "is also in overrides; keep it in one place",
        )
    swept = tuple(grid)
    paths: dict[str, Path] = {}
    for i, name in enumerate(scenarios):
        try:
            paths[name] = resolve_scenario(name, base)
        except InvalidValue as exc:
            raise InvalidValue(_where(source, f"scenarios[{i}]"), name, exc.reason) from None
    digests = {n: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for n, p in paths.items()}
    combos = [dict(zip(swept, vals, strict=True)) for vals in itertools.product(*grid.values())]
    if check is None or check is True:
        check = _default_check()
    if callable(check):
        for name in scenarios:
            for combo in combos:
                ov = {**fixed, **combo, **({LOAD_KEY: loads[0]} if loads[0] is not None else {})}
                try:
                    check(paths[name], ov)
                except (ValueError, KeyError, TypeError) as exc:
                    raise InvalidValue(
                        _where(source, f"scenario {name} with overrides"), ov, str(exc)
                    ) from None
    cells = [
        Cell(
            strategy=strategy,
            scenario=Path(name).stem if name.endswith((".yaml", ".yml")) else name,
            scenario_path=str(paths[name]),
            scenario_digest=digests[name],
            load=load,
            seed=seed,
            overrides=tuple(sorted({**fixed, **combo}.items())),
            swept=swept,
        )
        for name in scenarios
        for combo in combos
        for load in loads
        for strategy in strategies
        for seed in seeds
    ]
    return SweepSpec(
        name=str(data.get("name") or (Path(source).stem if source else "sweep")),
        description=str(data.get("description") or ""),
        cells=tuple(cells),
        swept_keys=swept,
        source=source,
        raw=dict(data),
    )


def _default_check() -> Callable[[Path, Mapping[str, Any]], object] | None:
    try:
        from ..sim import load_scenario
    except ImportError:
        return None
    return load_scenario


def load_sweep(path: str | Path, **kwargs: Any) -> SweepSpec:
    """Read and validate a sweep YAML file: a path, or a name in ./sweeps or the
    project's sweeps/ (``default`` is ``sweeps/default.yaml``)."""
    p = find_named(str(path), "sweeps") or Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InvalidValue("sweep", str(p), "no such file") from None
    except yaml.YAMLError as exc:
        raise InvalidValue(str(p), "", f"not valid YAML: {exc}") from None
    return parse_sweep(data, source=str(p), base=p.resolve().parent, **kwargs)


def select(cells: Sequence[Cell], **equal: Any) -> list[Cell]:
    """The cells whose attributes equal the given values (a small helper for callers)."""
    return [c for c in cells if all(getattr(c, k) == v for k, v in equal.items())]
