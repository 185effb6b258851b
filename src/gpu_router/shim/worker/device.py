"""The reference worker's device: which one it runs on (a CUDA GPU or the CPU), warmed up.

PyTorch is imported only when ``cuda`` or ``auto`` mode looks for a GPU, never at module
load. ``CUDA_DEVICE_ORDER`` defaults to ``PCI_BUS_ID`` so that ``--gpu N`` is the same
GPU as NVML's index N.
"""

from __future__ import annotations

import importlib
import os
import platform
from dataclasses import dataclass

from gpu_router.policy import RouterError


class WorkerError(RouterError):
    """The worker cannot start as asked (no CUDA GPU in cuda mode, bad index)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """The device jobs run on: ``mode`` "cuda" or "cpu", its index and name."""

    mode: str  # "cuda" | "cpu"
    index: int
    name: str
    torch_version: str | None = None

    @property
    def label(self) -> str:
        return f"cuda:{self.index}" if self.mode == "cuda" else "cpu"


def detect_device(gpu_index: int, mode: str = "auto") -> DeviceInfo:
    """``cuda`` when PyTorch sees GPU ``gpu_index`` (required in mode ``cuda``), else ``cpu``."""
    if mode not in ("auto", "cuda", "cpu"):
        raise WorkerError(f"mode={mode!r}: must be auto, cuda or cpu")
    if gpu_index < 0:
        raise WorkerError(f"gpu={gpu_index}: must be >= 0")
    if mode != "cpu":
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        try:
            torch = importlib.import_module("torch")
        except ImportError:
            torch = None
        if torch is not None and torch.cuda.is_available():
            count = torch.cuda.device_count()
            if gpu_index < count:
                name = torch.cuda.get_device_name(gpu_index)
                return DeviceInfo("cuda", gpu_index, name, torch.__version__)
            if mode == "cuda":
                raise WorkerError(f"gpu={gpu_index}: PyTorch sees {count} CUDA GPU(s)")
        if mode == "cuda":
            why = "PyTorch is not installed" if torch is None else "CUDA is not available"
            raise WorkerError(f"mode=cuda: {why}")
    return DeviceInfo("cpu", gpu_index, platform.processor() or platform.machine() or "cpu")


def warm_up_cuda(device: DeviceInfo) -> None:
    """Create the CUDA context (145-450 ms) before the first job, not during it."""
    torch = importlib.import_module("torch")
    dev = torch.device("cuda", device.index)
    x = torch.ones(64, 64, device=dev, dtype=torch.bfloat16)
    (x @ x).sum().item()


def reset_cuda(device: DeviceInfo) -> None:
    """A restart's device step: wait for the device, give the cached memory back to the
    driver and check that a kernel runs again."""
    torch = importlib.import_module("torch")
    with torch.cuda.device(device.index):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    warm_up_cuda(device)
