"""GPU models and fleets: from a scenario's groups or from the Alibaba GPU-v2023 node list.

``speed`` is sustained inference throughput relative to one H100 SXM (1.0); the
figures are ratios of dense FP16/BF16 tensor throughput derated for memory
bandwidth (documented in docs/simulator.md). The Alibaba trace anonymises two of
its models as G2 and G3; we assume A100-class parts for them (an assumption, not a
fact from the trace). Memory in MB (MiB as NVML reports it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..policy.types import GpuState
from ..resources import data_dir
from .scenario import FleetSpec, ScenarioError

#: name -> (memory_mb, compute capability, relative speed)
GPU_MODELS: dict[str, tuple[float, tuple[int, int], float]] = {
    "H200": (143_771.0, (9, 0), 1.15),
    "H100": (81_559.0, (9, 0), 1.0),
    "A100": (81_920.0, (8, 0), 0.45),
    "A100-40G": (40_960.0, (8, 0), 0.42),
    "L40S": (46_068.0, (8, 9), 0.40),
    "L4": (23_034.0, (8, 9), 0.15),
    "A10": (23_028.0, (8, 6), 0.17),
    "V100M32": (32_768.0, (7, 0), 0.18),
    "V100M16": (16_384.0, (7, 0), 0.18),
    "T4": (15_360.0, (7, 5), 0.08),
    "P100": (16_384.0, (6, 0), 0.06),
    "G2": (40_960.0, (8, 0), 0.42),
    "G3": (81_920.0, (8, 0), 0.45),
}

NODES_FILE = "traces/alibaba_gpu_v2023_nodes.csv"


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One simulated GPU: its id, model and the constants the engine needs."""

    gpu_id: str
    model: str
    memory_mb: float
    compute_capability: tuple[int, int]
    speed: float
    slots: int

    def state(self) -> GpuState:
        """The initial snapshot the Router starts from (idle, active)."""
        return GpuState(
            gpu_id=self.gpu_id,
            name=self.model,
            compute_capability=self.compute_capability,
            memory_total_mb=self.memory_mb,
            speed=self.speed,
            slots=self.slots,
            performance_index=min(1.0, self.speed),
        )


def model_info(name: str) -> tuple[float, tuple[int, int], float]:
    try:
        return GPU_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(GPU_MODELS))
        raise ScenarioError(f"fleet model={name!r}: unknown GPU model (known: {known})") from None


def scale_counts(counts: list[int], total: int) -> list[int]:
    """Scale counts proportionally to sum to ``total`` (largest remainder, ties by order)."""
    current = sum(counts)
    if current == 0:
        raise ScenarioError("fleet: groups hold no GPU, cannot scale to fleet.count")
    exact = [c * total / current for c in counts]
    out = [math.floor(x) for x in exact]
    order = sorted(range(len(counts)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def alibaba_groups(path: str | Path | None = None) -> list[tuple[str, int]]:
    """(model, GPU count) per model of the Alibaba node list, in file order of first use."""
    import pandas as pd

    path = Path(path) if path else data_dir() / NODES_FILE
    try:
        nodes = pd.read_csv(path, usecols=["gpu", "model"])
    except (OSError, ValueError) as err:
        raise ScenarioError(f"fleet.nodes_path={str(path)!r}: cannot read: {err}") from None
    counts = nodes.groupby("model", sort=False)["gpu"].sum()
    return [(str(m), int(c)) for m, c in counts.items() if c > 0]


def build_fleet(spec: FleetSpec) -> list[GpuSpec]:
    """The GPUs of a scenario, ids ``gpu-0000``.. in group order."""
    slots_default = spec.slots if spec.mode == "shared" else 1
    groups: list[tuple[str, int, int, float | None, float | None]]
    if spec.source == "alibaba":
        groups = [(m, c, slots_default, None, None) for m, c in alibaba_groups(spec.nodes_path)]
    elif spec.groups:
        groups = [
            (g.model, g.count, g.slots or slots_default, g.speed, g.memory_mb) for g in spec.groups
        ]
    else:
        groups = [(spec.model, spec.count or 1, slots_default, None, None)]
    if spec.count is not None and (spec.source == "alibaba" or spec.groups):
        scaled = scale_counts([g[1] for g in groups], spec.count)
        groups = [(g[0], n, *g[2:]) for g, n in zip(groups, scaled, strict=True)]
    fleet: list[GpuSpec] = []
    width = max(4, len(str(sum(g[1] for g in groups))))
    for model, count, slots, speed, memory in groups:
        mem, cc, spd = model_info(model)
        if spec.mode == "exclusive" and slots != 1:
            raise ScenarioError(f"fleet.slots={slots!r}: exclusive mode runs one request per GPU")
        for _ in range(count):
            gid = f"gpu-{len(fleet):0{width}d}"
            fleet.append(GpuSpec(gid, model, memory or mem, cc, speed or spd, slots))
    if not fleet:
        raise ScenarioError("fleet: no GPU in the fleet")
    return fleet


def capacity(fleet: list[GpuSpec]) -> float:
    """Exclusive-mode capacity in H100-seconds of work per second (sum of speeds)."""
    return float(np.sum([g.speed for g in fleet]))
