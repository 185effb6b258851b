"""The simulator: a SimPy model of GPU clusters that drives ``policy.Router`` through scenarios.

Public API (docs/simulator.md)::

    from gpu_router.sim import load_scenario, run_scenario, SimResult
"""

from .api import SimResult, draw_workload, load_scenario, parse_strategy, run_scenario
from .scenario import Scenario, ScenarioError, parse_scenario

__all__ = [
    "Scenario",
    "ScenarioError",
    "SimResult",
    "draw_workload",
    "load_scenario",
    "parse_scenario",
    "parse_strategy",
    "run_scenario",
]
