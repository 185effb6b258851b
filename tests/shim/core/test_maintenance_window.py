"""Admin maintenance with ``estimated_duration`` (minutes) ends by itself, also when the
router restarts inside the window."""

from __future__ import annotations

import asyncio
import time

import pytest

from ..app_helpers import H_ADMIN, H_ALICE, running

pytestmark = pytest.mark.timeout(30)


async def gpu_status(c, gpu_id: str) -> str:
    gpus = (await c.get("/api/v1/gpus", headers=H_ALICE)).json()["data"]["gpus"]
    return next(g["status"] for g in gpus if g["gpu_id"] == gpu_id)


def test_a_maintenance_window_ends_after_its_estimated_duration(tmp_path):
    path = str(tmp_path / "journal.sqlite3")

    async def scenario():
        async with running(path) as (c, app, _):
            r = await c.post(
                "/api/v1/admin/gpu/gpu-0/maintenance",
                json={"reason": "fan", "estimated_duration": 1},
                headers=H_ADMIN,
            )
            assert r.status_code == 200 and await gpu_status(c, "gpu-0") == "maintenance"
            store = app.state.service.store
            window = store.settings()["maintenance:gpu-0"]
            assert window["estimated_duration"] == 1
            # the window began 58 s ago (as if the router had been down meanwhile)
            store.set_setting("maintenance:gpu-0", {**window, "since": time.time() - 58.0})
            store.set_setting(
                "maintenance:gpu-1", {**window, "since": time.time() - 3600}
            )  # long over
        async with running(path) as (c, app, _):
            assert await gpu_status(c, "gpu-0") == "maintenance"  # what is left applies
            assert await gpu_status(c, "gpu-1") == "active"  # over: dropped at start
            for _ in range(400):  # about 2 s are left
                if await gpu_status(c, "gpu-0") == "active":
                    break
                await asyncio.sleep(0.02)
            assert await gpu_status(c, "gpu-0") == "active"
            await asyncio.sleep(0.3)  # the ticker forgets the window it ended
            assert app.state.service.store.settings() == {}

    asyncio.run(scenario())
