"""The Model Manager: configured models, learned load times, the seed's requirements."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_router.policy import InvalidValue, RouterConfig
from gpu_router.policy.models import ModelInfo, ModelRegistry, ModelsConfig
from gpu_router.policy.seed_reference import is_gpu_compatible


def registry() -> ModelRegistry:
    return ModelRegistry(
        ModelsConfig(
            default_memory_mb=4000.0,
            default_load_s=20.0,
            alpha=0.5,
            models={
                "sdxl": {"memory_mb": 7000, "load_s": 30, "gpu_types": ["H100"]},
                "old": {"min_compute_capability": [8, 0]},
            },
        )
    )


def test_configured_model_and_default_for_unknown() -> None:
    r = registry()
    assert r.info("sdxl") == ModelInfo(7000.0, 30.0, frozenset({"H100"}))
    assert r.info("nobody") == ModelInfo(4000.0, 20.0)
    assert r.info("old").memory_mb == 4000.0  # missing keys take the defaults
    assert r.known("sdxl") and not r.known("nobody")
    assert r.runs_on("sdxl", "H100") and not r.runs_on("sdxl", "T4")
    assert r.runs_on("nobody", "T4")


def test_load_time_is_learned_by_ewma() -> None:
    r = registry()
    r.observe_load("sdxl", 10.0)  # the first observation replaces the configured value
    assert r.load_s("sdxl") == 10.0
    r.observe_load("sdxl", 20.0)  # then moves by alpha = 0.5
    assert r.load_s("sdxl") == 15.0
    assert r.observed_loads("sdxl") == 2
    assert r.info("sdxl").load_s == 15.0 and r.info("sdxl").memory_mb == 7000.0
    r.observe_load("new", 3.0)
    assert r.known("new") and r.load_s("new") == 3.0 and r.observed_loads("nobody") == 0


def test_get_model_requirements_feeds_the_seed_filter() -> None:
    r = registry()
    req = r.get_model_requirements("old")
    assert req == {
        "min_memory_mb": 4000.0,
        "load_s": 20.0,
        "gpu_types": [],
        "min_compute_capability": "8.0",
    }
    assert r.get_model_requirements(None)["min_memory_mb"] == 4000.0
    gpu = {"compute_capability": "7.5", "memory_total": 16000}
    assert not is_gpu_compatible(gpu, req)
    assert is_gpu_compatible({"compute_capability": "9.0", "memory_total": 80000}, req)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cache_share": 0.0}, "models.cache_share"),
        ({"cache_share": 1.5}, "models.cache_share"),
        ({"alpha": float("nan")}, "models.alpha"),
        ({"default_load_s": -1.0}, "models.default_load_s"),
        ({"models": {"m": {"size": 1}}}, "models.models.m.size"),
        ({"models": {"m": {"memory_mb": True}}}, "models.memory_mb"),
    ],
)
def test_invalid_settings_name_the_key(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidValue) as err:
        ModelRegistry(ModelsConfig(**kwargs))
    assert err.value.field == field


def test_negative_observed_load_is_refused() -> None:
    with pytest.raises(InvalidValue):
        registry().observe_load("m", -1.0)


def test_router_config_takes_a_models_block() -> None:
    cfg = RouterConfig.from_mapping({"models": {"cache_share": 0.25}})
    assert cfg.models == ModelsConfig(cache_share=0.25)
    with pytest.raises(InvalidValue):
        RouterConfig.from_mapping({"models": {"cache": 1}})


@given(st.lists(st.floats(min_value=0.0, max_value=1e4), min_size=1, max_size=30))
def test_learned_load_stays_within_observed_range(loads: list[float]) -> None:
    r = ModelRegistry(ModelsConfig(alpha=0.3))
    for x in loads:
        r.observe_load("m", x)
    assert min(loads) - 1e-6 <= r.load_s("m") <= max(loads) + 1e-6
