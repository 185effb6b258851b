"""Choosing the worker's model weights without PyTorch: delays by default on the CPU,
``--model-weights torch`` refused with a clear message when PyTorch is absent."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gpu_router.shim.worker.cli import add_arguments, model_holder
from gpu_router.shim.worker.device import DeviceInfo
from gpu_router.shim.worker.models import ModelHolder

from .worker_proc import free_port, worker_process

CPU = DeviceInfo("cpu", 0, "x86_64")


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--gpu", "0", *argv])


def test_cpu_mode_keeps_the_calibrated_delay() -> None:
    h = model_holder(parse("--model-load-s", "1.5", "--model-memory-mb", "900"), CPU)
    assert type(h) is ModelHolder and (h.load_s, h.capacity_mb) == (1.5, 900.0)
    h.load_s = 0.0
    h.ensure("a", 300.0)
    assert h.report() == {
        "weights": "delay",
        "capacity_mb": 900.0,
        "used_mb": 300.0,
        "loads": 1,
        "held": [{"id": "a", "memory_mb": 300.0}],
    }


def test_torch_weights_without_torch_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ImportError, match=r"need PyTorch: pip install 'gpu-router\[torch\]'"):
        model_holder(parse("--model-weights", "torch"), CPU)


@pytest.mark.timeout(60)
def test_worker_process_refuses_torch_weights_without_torch(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here: the refusal needs it absent")
    argv = ["worker", "--gpu", "0", "--mode", "cpu", "--model-weights", "torch"]
    argv += ["--model-cache", str(tmp_path), "--port", str(free_port())]
    cmd = [sys.executable, "-m", "gpu_router.cli", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=50, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert "--model-weights: real model weights need PyTorch" in out.stderr


@pytest.mark.timeout(60)
def test_worker_process_reports_its_models() -> None:
    with worker_process("--model-load-s", "0") as url:
        got = httpx.get(f"{url}/models").json()
    assert got == {"weights": "delay", "capacity_mb": 40000.0, "used_mb": 0, "loads": 0, "held": []}
