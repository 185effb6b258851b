"""The twin check: the simulator against the live service on the same workload
(docs/simulator.md, "The twin check"). ``gpu-router twin TWIN.yaml``.

    from gpu_router.twin import load_twin, run_twin
    result = run_twin(load_twin("scenarios/twin/poisson.yaml"), loads=(0.8,))
"""

from .run import run_load, run_twin
from .spec import Calibration, TwinError, TwinSpec, load_twin, scenario_at

__all__ = [
    "Calibration",
    "TwinError",
    "TwinSpec",
    "load_twin",
    "run_load",
    "run_twin",
    "scenario_at",
]
