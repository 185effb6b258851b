"""The service with model locality on: the router routes by the models it placed."""

from __future__ import annotations

import asyncio

import pytest

from gpu_router.policy import ModelsConfig
from gpu_router.shim.config import ConfigError, config_from_mapping
from gpu_router.shim.core.policy_config import policy_config

from ..app_helpers import H_ALICE, body, running, wait_state

pytestmark = pytest.mark.timeout(30)


def test_the_section_maps_onto_the_policy() -> None:
    assert policy_config(config_from_mapping({})).models is None
    models = {"sd": {"load_s": 9}}
    raw = {"model_locality": {"enabled": True, "cache_share": 0.25, "models": models}}
    assert policy_config(config_from_mapping(raw)).models == ModelsConfig(
        cache_share=0.25, models={"sd": {"load_s": 9}}
    )
    bad = {"model_locality": {"enabled": True, "models": {"sd": {"size": 1}}}}
    with pytest.raises(ConfigError) as err:
        policy_config(config_from_mapping(bad))
    assert err.value.key == "model_locality.models.sd.size"


@pytest.mark.parametrize(("strategy", "third_on"), [("warm-first", "gpu-1"), (None, "gpu-0")])
def test_a_request_goes_where_its_model_is(strategy: str | None, third_on: str) -> None:
    async def scenario() -> str:
        overrides = {
            "model_locality": {"enabled": True, "default_load_s": 0.0},
            "load_balancer": {"strategy": strategy},
        }
        async with running(n_gpus=2, **overrides) as (c, app, _):
            for rid, model in (("a", "other"), ("b", "sd")):  # both at once: gpu-0, gpu-1
                sim = {"simulate": {"duration_ms": 200}}
                r = await c.post(
                    "/api/v1/route",
                    json=body(request_id=rid, model_id=model, payload=sim),
                    headers=H_ALICE,
                )
                assert r.status_code == 200, r.text
            first = [await wait_state(c, rid, {"completed"}, H_ALICE) for rid in ("a", "b")]
            assert [d["assigned_gpu"] for d in first] == ["gpu-0", "gpu-1"]
            router = app.state.service.router
            assert router.resident_models("gpu-1") == ("sd",)
            await asyncio.sleep(0.05)
            await c.post("/api/v1/route", json=body(request_id="c", model_id="sd"), headers=H_ALICE)
            return str((await wait_state(c, "c", {"completed"}, H_ALICE))["assigned_gpu"])

    assert asyncio.run(scenario()) == third_on
