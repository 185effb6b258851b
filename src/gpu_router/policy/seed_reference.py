"""The seed's ``select_gpu`` (design section 4.1) as written, over the seed's dicts.

Kept line for line as the reference the vectorised ``hybrid-seed`` strategy is
tested against. The one change is units: the seed compares ``memory_total`` in
bytes with ``min_memory_mb * 1024 * 1024``; here every memory is in MB.
``get_model_requirements`` and ``calculate_type_compatibility`` are left open by
the seed; they are parameters here (type compatibility: 1.0 when the GPU lists the
type among its capabilities, else 0.0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .health import temperature_score

Weights = Mapping[str, float]
SEED_WEIGHTS = {"usage": 0.35, "priority": 0.25, "type": 0.15, "performance": 0.15, "health": 0.10}


def calculate_type_compatibility(request_type: str, capabilities: Any) -> float:
    return 1.0 if request_type in capabilities else 0.0


def is_gpu_compatible(gpu_state: Mapping[str, Any], model_requirements: Mapping[str, Any]) -> bool:
    if model_requirements.get("min_compute_capability"):
        gpu_cc = tuple(map(int, gpu_state["compute_capability"].split(".")))
        model_cc = tuple(map(int, model_requirements["min_compute_capability"].split(".")))
        if gpu_cc < model_cc:
            return False
    if model_requirements.get("min_memory_mb"):  # noqa: SIM102 - kept as the seed wrote it
        if gpu_state["memory_total"] < model_requirements["min_memory_mb"]:
            return False
    return True


def has_sufficient_resources(gpu_state: Mapping[str, Any], request: Mapping[str, Any]) -> bool:
    estimated_memory = request.get("resource_requirements", {}).get("memory", 0)
    free_memory = gpu_state["memory_total"] - gpu_state["memory_used"]
    return not estimated_memory > free_memory


def calculate_health_score(gpu_state: Mapping[str, Any]) -> float:
    temp_score = temperature_score(gpu_state.get("temperature", 0))
    power = gpu_state.get("power_usage", 0)
    power_limit = gpu_state.get("power_limit", 1)
    power_score = 1.0 - (power / power_limit) if power_limit > 0 else 0.5
    error_score = 1.0 - gpu_state.get("error_rate", 0)
    score: float = 0.4 * temp_score + 0.3 * power_score + 0.3 * error_score
    return score


def select_gpu(
    request: Mapping[str, Any],
    gpu_states: Mapping[str, Mapping[str, Any]],
    user_quotas: Mapping[str, Mapping[str, float]],
    get_model_requirements: Callable[[Any], Mapping[str, Any]] = lambda _m: {},
    weights: Weights = SEED_WEIGHTS,
) -> str | None:
    """The GPU id with the highest seed score, or None (quota exceeded / nothing fits)."""
    scores: dict[str, float] = {}
    user_id = request.get("user_id", "anonymous")
    if user_id in user_quotas and (
        user_quotas[user_id]["gpu_usage"] >= user_quotas[user_id]["gpu_limit"]
    ):
        return None
    model_requirements = get_model_requirements(request.get("model_id"))
    for gpu_id, state in gpu_states.items():
        if not is_gpu_compatible(state, model_requirements):
            continue
        if not has_sufficient_resources(state, request):
            continue
        memory_usage_score = 1 - (state["memory_used"] / state["memory_total"])
        compute_usage_score = 1 - state["utilization_percent"] / 100
        usage_score = 0.6 * memory_usage_score + 0.4 * compute_usage_score
        priority_score = request.get("priority", 3) / 5
        type_score = calculate_type_compatibility(
            request.get("type", "inference"), state["capabilities"]
        )
        performance_score = state.get("performance_index", 0.5)
        health_score = calculate_health_score(state)
        scores[gpu_id] = (
            weights.get("usage", 0.0) * usage_score
            + weights.get("priority", 0.0) * priority_score
            + weights.get("type", 0.0) * type_score
            + weights.get("performance", 0.0) * performance_score
            + weights.get("health", 0.0) * health_score
        )
    if not scores:
        return None
    return max(scores, key=scores.__getitem__)
