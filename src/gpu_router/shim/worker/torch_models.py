"""Real weights for the reference worker's models (PyTorch): made once, saved, loaded.

A model's weights are deterministic float32 tensors (a ``torch.Generator`` seeded from the
model id) of ``min(memory_mb, max_mb)`` MiB (1 MiB = 2**20 bytes) in tensors of at most
``CHUNK_MB`` MiB, written once with ``torch.save`` to ``cache_dir`` and then read with
``torch.load(map_location=device, weights_only=True)`` for every load. A file
``<cache_dir>/<id>.pt`` that the user put there (a state dict of tensors) is loaded as
it is instead. The memory counted and reported is the tensors' real bytes; on CUDA the
report also gives ``torch.cuda.memory_allocated``. Unloading drops the tensors (on CUDA
``torch.cuda.empty_cache()``). PyTorch is imported only when this holder is made.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from .models import ModelHolder

CHUNK_MB = 16.0  # MiB per tensor of a made model
MIB = 2**20


def torch_or_none() -> Any:
    """The ``torch`` module, or None when PyTorch is not installed."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def file_stem(model_id: str) -> str:
    """A file-safe name for ``model_id`` (its readable part and a digest)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model_id)[:64]
    return f"{safe}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"


class TorchModelHolder(ModelHolder):
    """Resident models as real tensors on ``device`` ("cpu" or "cuda:N")."""

    def __init__(self, capacity_mb: float, device: str, cache_dir: str, max_mb: float) -> None:
        super().__init__(capacity_mb, 0.0)
        if not max_mb > 0:
            raise ValueError(f"max_mb={max_mb!r} must be > 0")
        torch = torch_or_none()
        if torch is None:
            raise ImportError("real model weights need PyTorch: pip install 'gpu-router[torch]'")
        self.torch = torch
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.max_mb = float(max_mb)
        self._weights: dict[str, dict[str, Any]] = {}
        self._load_s: dict[str, float] = {}
        self._file_lock = threading.Lock()

    def weights_file(self, model_id: str, memory_mb: float) -> Path:
        """The user's ``<id>.pt`` when there, else the made one (written once)."""
        shipped = self.cache_dir / f"{model_id}.pt"
        if re.fullmatch(r"[A-Za-z0-9._-]+", model_id) and shipped.is_file():
            return shipped
        mb = min(float(memory_mb), self.max_mb)
        n = max(1, int(mb * MIB) // 4)  # float32 elements
        path = self.cache_dir / f"{file_stem(model_id)}.{n * 4}B.pt"
        with self._file_lock:
            if not path.is_file():
                self._make(model_id, n, path)
        return path

    def _make(self, model_id: str, n: int, path: Path) -> None:
        torch = self.torch
        seed = int.from_bytes(hashlib.sha256(model_id.encode()).digest()[:8], "little")
        gen = torch.Generator().manual_seed(seed)
        per = int(CHUNK_MB * MIB) // 4
        state = {
            f"layer{i}.weight": torch.randn(min(per, n - start), generator=gen)
            for i, start in enumerate(range(0, n, per))
        }
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)  # whole or absent, never half written

    def _load(
        self, model_id: str, memory_mb: float, cancel: threading.Event
    ) -> tuple[float, float] | None:
        t0 = time.perf_counter()
        path = self.weights_file(model_id, memory_mb)
        state = self.torch.load(path, map_location=self.device, weights_only=True)
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        took = time.perf_counter() - t0
        if cancel.is_set():
            del state
            return None
        tensors = {k: v for k, v in state.items() if isinstance(v, self.torch.Tensor)}
        with self._lock:
            self._weights[model_id] = tensors
            self._load_s[model_id] = took
        return sum(t.nbytes for t in tensors.values()) / MIB, took

    def _unload(self, model_id: str) -> None:
        self._weights.pop(model_id, None)  # called with self._lock held
        self._load_s.pop(model_id, None)
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def held(self) -> list[dict[str, Any]]:
        """``[{id, memory_mb, bytes, load_s}]``: real bytes and measured load time."""
        with self._lock:
            return [
                {
                    "id": m,
                    "memory_mb": mb,
                    "bytes": sum(t.nbytes for t in self._weights.get(m, {}).values()),
                    "load_s": self._load_s.get(m),
                }
                for m, mb in self._held.items()
            ]

    def report(self) -> dict[str, Any]:
        out = super().report()
        out.update(weights="torch", device=str(self.device), cache_dir=str(self.cache_dir))
        out["max_mb"] = self.max_mb
        if self.device.type == "cuda":
            out["cuda_allocated_bytes"] = int(self.torch.cuda.memory_allocated(self.device))
        return out
