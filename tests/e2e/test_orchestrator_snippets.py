# ruff: noqa: W293 - the seed code is kept byte for byte, blank lines with spaces included
"""The AI Orchestrator code of seed 000 section 2.1 (route, status, cancel with aiohttp),
copied unchanged, against a live router that trusts the loopback network."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from .procs import router_config, start_router

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

# ---- seed 000, 2.1.1 - 2.1.3, verbatim (Turkish docstrings and all) ----
SNIPPETS = '''
async def route_request(request_data):
    """
    İsteği GPU İstek Yönlendirme Katmanı'na yönlendir.
    
    Args:
        request_data: İstek verileri
        
    Returns:
        Yönlendirme sonucu
    """
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{config['gpu_router_url']}/api/v1/route",
            json=request_data
        ) as response:
            if response.status == 200:
                return await response.json()
            else:
                logger.error(f"İstek yönlendirme başarısız: {response.status}")
                raise Exception(f"İstek yönlendirme başarısız: {response.status}")

async def get_request_status(request_id):
    """
    İstek durumunu GPU İstek Yönlendirme Katmanı'ndan sorgula.
    
    Args:
        request_id: İstek ID'si
        
    Returns:
        İstek durumu
    """
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{config['gpu_router_url']}/api/v1/requests/{request_id}"
        ) as response:
            if response.status == 200:
                return await response.json()
            elif response.status == 404:
                logger.warning(f"İstek bulunamadı: {request_id}")
                return None
            else:
                logger.error(f"İstek durumu sorgulanamadı: {response.status}")
                raise Exception(f"İstek durumu sorgulanamadı: {response.status}")

async def cancel_request(request_id):
    """
    İsteği GPU İstek Yönlendirme Katmanı üzerinden iptal et.
    
    Args:
        request_id: İstek ID'si
        
    Returns:
        İptal sonucu
    """
    async with aiohttp.ClientSession() as session:
        async with session.delete(
            f"{config['gpu_router_url']}/api/v1/requests/{request_id}"
        ) as response:
            if response.status == 200:
                return await response.json()
            elif response.status == 404:
                logger.warning(f"İptal edilecek istek bulunamadı: {request_id}")
                return None
            else:
                logger.error(f"İstek iptal edilemedi: {response.status}")
                raise Exception(f"İstek iptal edilemedi: {response.status}")

'''


def test_seed_orchestrator_code_runs_unchanged(tmp_path):
    cfg = router_config(
        tmp_path,
        None,
        auth={
            "trusted_networks": [
                {"cidr": "127.0.0.1/32", "user_id": "orchestrator", "role": "service"}
            ]
        },
    )
    router, url = start_router(tmp_path, cfg)
    ns = {
        "aiohttp": aiohttp,
        "config": {"gpu_router_url": url},
        "logger": logging.getLogger("orchestrator"),
    }
    exec(SNIPPETS, ns)  # noqa: S102 - the seed's code, as written

    async def scenario():
        long = {"simulate": {"duration_ms": 30_000}}
        routed = await ns["route_request"](
            {
                "request_id": "orch-1",
                "user_id": "u1",
                "model_id": "llama",
                "priority": 4,
                "type": "inference",
                "resource_requirements": {
                    "memory": 2048,
                    "compute_units": 1,
                    "max_batch_size": 4,
                    "expected_duration": 30_000,
                },
                "timeout": 60_000,
                "payload": long,
            }
        )
        assert routed["status"] == "success"
        assert routed["data"]["request_id"] == "orch-1"
        assert routed["data"]["status"] in ("accepted", "queued")
        status = await ns["get_request_status"]("orch-1")
        assert status["data"]["status"] in ("queued", "processing")
        assert status["meta"]["version"] == "1.0"
        assert await ns["get_request_status"]("no-such-request") is None
        cancelled = await ns["cancel_request"]("orch-1")
        assert cancelled["data"]["cancelled"] is True
        status = await ns["get_request_status"]("orch-1")
        assert status["data"]["status"] == "cancelled"
        assert await ns["cancel_request"]("no-such-request") is None

    try:
        asyncio.run(scenario())
    finally:
        router.stop()
