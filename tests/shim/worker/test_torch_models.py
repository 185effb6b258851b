"""Real PyTorch weights for the worker's models (skipped without PyTorch): made once,
deterministic, loaded with the real bytes and load time reported, LRU by real memory.
On CPU only: no GPU is lent to the project's tests (the CUDA path is not run here)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

torch = pytest.importorskip("torch")

from gpu_router.shim.worker.torch_models import MIB, TorchModelHolder, file_stem  # noqa: E402

from .worker_proc import worker_process  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def test_weights_are_made_once_deterministic_and_capped(tmp_path: Path) -> None:
    h = TorchModelHolder(100.0, "cpu", str(tmp_path), max_mb=8.0)
    took = h.ensure("sd-1.5", 20.0)  # capped: 8 MiB made, not 20
    assert took > 0
    (made,) = tmp_path.glob("*.pt")
    assert made.name == f"{file_stem('sd-1.5')}.{8 * MIB}B.pt"
    first = torch.load(made, weights_only=True)
    assert sum(t.nbytes for t in first.values()) == 8 * MIB
    mtime = made.stat().st_mtime_ns
    other = TorchModelHolder(100.0, "cpu", str(tmp_path / "b"), max_mb=8.0)
    other.ensure("sd-1.5", 20.0)
    again = torch.load(next((tmp_path / "b").glob("*.pt")), weights_only=True)
    assert all(torch.equal(first[k], again[k]) for k in first)  # seeded from the id
    h.ensure("sd-1.5", 20.0)  # held: nothing read
    h.ensure("other", 4.0, evict=["sd-1.5"])
    h.ensure("sd-1.5", 20.0)  # read again from the file, not made again
    assert made.stat().st_mtime_ns == mtime and h.loads == 3


def test_report_uses_real_bytes_and_measured_load(tmp_path: Path) -> None:
    h = TorchModelHolder(100.0, "cpu", str(tmp_path), max_mb=64.0)
    took = h.ensure("a", 3.0)
    (held,) = h.held()
    assert held["id"] == "a" and held["bytes"] == 3 * MIB and held["memory_mb"] == 3.0
    assert held["load_s"] == took and took > 0
    rep = h.report()
    assert (rep["weights"], rep["device"], rep["used_mb"], rep["loads"]) == ("torch", "cpu", 3.0, 1)
    assert h._weights["a"]["layer0.weight"].device.type == "cpu"  # type: ignore[index]


def test_lru_by_real_memory_and_unload_drops_tensors(tmp_path: Path) -> None:
    h = TorchModelHolder(10.0, "cpu", str(tmp_path), max_mb=64.0)
    for m in ("a", "b", "a", "c"):  # 4 MiB each: b is the oldest when c comes
        h.ensure(m, 4.0)
    assert [m["id"] for m in h.held()] == ["a", "c"] and set(h._weights) == {"a", "c"}
    h.ensure("huge", 20.0)  # loaded for the job, not kept
    assert "huge" not in h._weights and h.used_mb() == 8.0
    cancel = threading.Event()
    cancel.set()
    assert h.ensure("d", 1.0, cancel=cancel) == 0.0 and "d" not in h._weights


def test_a_shipped_file_is_loaded_as_it_is(tmp_path: Path) -> None:
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, tmp_path / "tiny.pt")
    h = TorchModelHolder(100.0, "cpu", str(tmp_path), max_mb=64.0)
    h.ensure("tiny", 5000.0)
    assert h.held()[0]["bytes"] == 4000
    assert torch.equal(h._weights["tiny"]["w"], torch.arange(1000, dtype=torch.float32))


def test_worker_process_loads_real_weights_on_cpu(tmp_path: Path) -> None:
    args = ("--model-weights", "torch", "--model-cache", str(tmp_path))
    with worker_process(*args, "--model-weights-max-mb", "2") as url:
        r = httpx.post(
            f"{url}/jobs",
            json={
                "request_id": "r1",
                "payload": {"matrix_size": 16, "iterations": 1},
                "model": {"id": "sd", "memory_mb": 6000, "evict": []},
            },
        )
        job = r.json()["job_id"]
        for _ in range(200):
            st = httpx.get(f"{url}/jobs/{job}").json()
            if st["state"] != "running":
                break
            threading.Event().wait(0.05)
        rep = httpx.get(f"{url}/models").json()
    assert st["state"] == "completed" and st["model_load_s"] > 0
    assert rep["weights"] == "torch" and [m["id"] for m in rep["held"]] == ["sd"]
    assert rep["held"][0]["bytes"] == 2 * MIB
