"""The service with model locality on: the router routes by the models it placed."""

from __future__ import annotations

import asyncio

import pytest

from gpu_router.policy import ModelsConfig
from gpu_router.shim.config import ConfigError, config_from_mapping
from gpu_router.shim.core.policy_config import policy_config
from gpu_router.shim.gpu_sources.virtual import VirtualFleet

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


def test_a_virtual_gpu_restarted_behind_the_routers_back_makes_the_next_request_cold() -> None:
    """The virtual fleet loads models and reports them; the service reads the reports
    (``model_locality.report_interval``): after the fleet restarts the GPU (the router
    is not told), the next request for its model is counted cold and loads again."""

    async def scenario() -> tuple[dict, list[str], dict]:
        overrides = {
            "model_locality": {
                "enabled": True,
                "default_load_s": 0.1,
                "report_interval": 0.05,
                "report_grace_s": 0.05,
            },
            "load_balancer": {"strategy": "warm-first"},
        }
        fleet = VirtualFleet(1, period_s=0.02, model_load_s=0.1)
        async with running(fleet=fleet, **overrides) as (c, app, _):
            router = app.state.service.router
            for rid in ("a", "b"):
                r = await c.post(
                    "/api/v1/route", json=body(request_id=rid, model_id="sd"), headers=H_ALICE
                )
                assert r.status_code == 200, r.text
                await wait_state(c, rid, {"completed"}, H_ALICE)
            await asyncio.sleep(0.2)  # reports after the load keep it: the GPU holds it
            assert fleet.held_models("gpu-0") == ["sd"]
            assert router.resident_models("gpu-0") == ("sd",)
            before = (await c.get("/api/v1/metrics", headers=H_ALICE)).json()["data"]["locality"]
            fleet.restart("gpu-0")
            for _ in range(100):
                if router.resident_models("gpu-0") == ():
                    break
                await asyncio.sleep(0.02)
            gone = list(router.resident_models("gpu-0"))
            await c.post("/api/v1/route", json=body(request_id="c", model_id="sd"), headers=H_ALICE)
            await wait_state(c, "c", {"completed"}, H_ALICE)
            after = (await c.get("/api/v1/metrics", headers=H_ALICE)).json()["data"]["locality"]
            return before, gone, after

    before, gone, after = asyncio.run(scenario())
    assert (before["cold_starts"], before["warm_starts"]) == (1, 1)
    assert gone == []
    assert (after["cold_starts"], after["warm_starts"]) == (2, 1)
