"""GPU state from NVML through nvidia-ml-py's ``pynvml`` (DESIGN 5.2).

Each ``sample()`` reads every GPU (in a worker thread: first calls of a kind can take
milliseconds) and returns ``GpuState`` snapshots: memory in MB (bytes / 2**20),
utilization %, temperature C, power and enforced limit in W (mW / 1000), compute
capability. A query a GPU answers with ``NVMLError_NotSupported`` is absent, never a
failure, and is not asked again (:mod:`.nvml_device`). Error signals
(``drain_signals()``) come from Xid and ECC events, ECC counters and remapped rows
(:mod:`.nvml_errors`); a hard one puts the GPU in ``error``. ``NVMLError_GpuIsLost`` on
any call is a hard ``unreachable`` signal until ``clear(gpu_id)``.

``error_rate`` is the share of the last ``error_window`` samples in which a new error
appeared (1.0 while a hard signal holds). ``pynvml`` is imported only when no module
is passed in, so machines without a GPU never load it (tests pass ``FakePynvml``).

GPUs join and leave at run time (``elastic``): every ``rescan_s`` seconds the source
counts the devices again (``nvmlDeviceGetCount``), takes a fresh handle of each by index
(NVML's enumeration and handles change when a GPU is removed or discovered) and matches
them to the GPUs it knows by UUID. A known UUID keeps its id wherever it now sits; a new
UUID gets ``{id_prefix}{index}``, or the next free number above it when another GPU
ever held that id; a known GPU NVML no longer enumerates has left (an index whose handle or UUID
cannot be read, a lost GPU, keeps the GPU it had). The service re-routes a departed
GPU's work (:meth:`gpu_router.shim.core.execution.Execution.gpu_left`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from gpu_router.policy import GpuState, GpuStatus

from .base import (
    ErrorSignal,
    JobRunner,
    SignalLog,
    SourceUnavailable,
    WorkerUnavailable,
    positive_period,
    static_worker_urls,
)
from .nvml_device import MB, Lost, NvmlDevice, query, text
from .nvml_errors import NvmlErrors

log = logging.getLogger(__name__)


class NvmlSource:
    """Samples the GPUs NVML sees. ``nvml``: a pynvml-like module (default: import pynvml).

    ``rescan_s``: seconds between two re-scans of the devices (None: never)."""

    #: the samples list the fleet: a GPU missing from them has left (the sampler's rule)
    elastic = True

    def __init__(
        self,
        nvml: Any = None,
        *,
        period_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        id_prefix: str = "gpu-",
        indices: list[int] | None = None,
        worker_urls: Mapping[str, str] | None = None,
        worker_base_port: int | None = None,
        worker_host: str = "127.0.0.1",
        speed: Mapping[str, float] | None = None,
        slots: int = 1,
        error_window: int = 20,
        events: bool = True,
        in_thread: bool = True,
        rescan_s: float | None = 10.0,
    ) -> None:
        self.period_s = positive_period("period_s", period_s)
        self.rescan_s = None if rescan_s is None else positive_period("rescan_s", rescan_s)
        self._scanned_at = 0.0
        self._ids: dict[str, str] = {}  # every UUID seen -> its GPU id (never given to another)
        self._nvml = nvml
        self._clock = clock
        self._id_prefix = id_prefix
        self._indices = indices
        self._urls = static_worker_urls(worker_urls)
        self._base_port = worker_base_port
        self._host = worker_host
        self._speed = dict(speed or {})
        self._slots = slots
        self._window = max(1, int(error_window))
        self._events = events
        self._in_thread = in_thread
        self._devices: list[NvmlDevice] | None = None
        self._signals = SignalLog()
        self._errors = NvmlErrors(self._signals)
        self._lock = threading.Lock()
        self.driver_version: str | None = None

    # -- the source interface ----------------------------------------------------------

    async def sample(self) -> list[GpuState]:
        if self._in_thread:
            return await asyncio.to_thread(self.sample_sync)
        return self.sample_sync()

    def sample_sync(self) -> list[GpuState]:
        with self._lock:
            devices = self._open()
            now = self._clock()
            if self.rescan_s is not None and now - self._scanned_at >= self.rescan_s:
                devices = self._rescan(now)
            return [self._read(dev, now) for dev in devices]

    def drain_signals(self) -> list[ErrorSignal]:
        return self._signals.drain()

    def worker_url(self, gpu_id: str) -> str | None:
        if gpu_id in self._urls:
            return self._urls[gpu_id]
        if self._base_port is not None and gpu_id.startswith(self._id_prefix):
            suffix = gpu_id[len(self._id_prefix) :]
            if suffix.isdigit():
                return f"http://{self._host}:{self._base_port + int(suffix)}"
        return None

    def virtual_worker(self, gpu_id: str) -> JobRunner:
        raise WorkerUnavailable(f"{gpu_id}: an NVML GPU has an HTTP worker, not a virtual one")

    def details(self, gpu_id: str) -> dict[str, Any]:
        """Readings beyond GpuState (uuid, clocks, ECC, remapped rows, unsupported queries)."""
        for dev in self._devices or []:
            if dev.gpu_id == gpu_id:
                return dict(dev.details)
        raise KeyError(gpu_id)

    def clear(self, gpu_id: str) -> None:
        """Forget latched hard signals of a GPU (after an admin restart or a GPU reset)."""
        with self._lock:
            for dev in self._devices or []:
                if dev.gpu_id == gpu_id:
                    dev.held.clear()
                    dev.recent.clear()
                    dev.details.pop("dbe_event", None)

    async def aclose(self) -> None:
        if self._in_thread:
            await asyncio.to_thread(self._close)
        else:
            self._close()

    # -- opening and closing -------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError as exc:  # pragma: no cover - it is a dependency
                raise SourceUnavailable(f"nvidia-ml-py is not installed: {exc}") from exc
            self._nvml = pynvml
        return self._nvml

    def _open(self) -> list[NvmlDevice]:
        if self._devices is not None:
            return self._devices
        nv = self._module()
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise SourceUnavailable(f"NVML could not start: {exc}") from exc
        try:
            self.driver_version = text(nv.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver_version = None
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            raise SourceUnavailable(f"NVML could not count the GPUs: {exc}") from exc
        indices = range(count) if self._indices is None else self._indices
        devices = []
        for i in indices:
            if not 0 <= i < count:
                raise SourceUnavailable(f"indices: GPU {i} does not exist (NVML sees {count})")
            dev = NvmlDevice(i, f"{self._id_prefix}{i}", None)
            self._try_open(nv, dev, self._clock())
            devices.append(dev)
        self._devices = devices
        self._scanned_at = self._clock()
        return devices

    def _rescan(self, now: float) -> list[NvmlDevice]:
        """Match what NVML enumerates now to the known GPUs by UUID (see the module doc)."""
        nv, devices = self._nvml, self._devices or []
        self._scanned_at = now
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            log.warning("NVML re-scan: could not count the GPUs: %s", exc)
            return devices
        wanted = range(count) if self._indices is None else self._indices
        found: dict[str, tuple[int, Any]] = {}  # UUID -> (index, handle)
        unreadable: set[int] = set()
        for i in wanted:
            if not 0 <= i < count:
                continue
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                found[text(nv.nvmlDeviceGetUUID(handle))] = (i, handle)
            except nv.NVMLError:
                unreadable.add(i)
        at_index = {i: uuid for uuid, (i, _) in found.items()}
        kept: list[NvmlDevice] = []
        for dev in devices:
            uuid = dev.uuid
            if (
                uuid is None
                and self._ids.get(at_index.get(dev.index, ""), dev.gpu_id) == dev.gpu_id
            ):
                uuid = at_index.get(dev.index)  # never read: what sits at its index now
            if uuid is not None and uuid in found:
                i, handle = found.pop(uuid)
                if i != dev.index or dev.handle is None:  # it moved: its events follow it
                    self._errors.free(nv, dev)
                    dev.event_set, dev.index = None, i
                    self._try_open(nv, dev, now)
                else:
                    dev.handle = handle
                kept.append(dev)
            elif dev.index in unreadable:
                kept.append(dev)  # lost: not known to have left
            else:
                log.warning("GPU %s (%s) left the NVML enumeration", dev.gpu_id, dev.uuid)
                self._errors.free(nv, dev)
        for uuid, (i, _) in sorted(found.items(), key=lambda item: item[1][0]):
            dev = NvmlDevice(i, self._new_id(uuid, i, kept), None)
            try:
                self._open_device(nv, dev)
            except (Lost, nv.NVMLError) as exc:  # not opened: tried again at the next scan
                log.info("GPU at NVML index %d not opened: %s", i, exc)
                continue
            log.info("GPU %s (%s) joined at NVML index %d", dev.gpu_id, uuid, i)
            kept.append(dev)
        kept.sort(key=lambda d: d.index)
        self._devices = kept
        return kept

    def _new_id(self, uuid: str, index: int, present: list[NvmlDevice]) -> str:
        """The GPU id of a UUID: the one it had, else by index unless taken (see above)."""
        if uuid in self._ids:
            return self._ids[uuid]
        taken = set(self._ids.values()) | {d.gpu_id for d in present}
        gpu_id, n = f"{self._id_prefix}{index}", index
        while gpu_id in taken:
            n += 1
            gpu_id = f"{self._id_prefix}{n}"
        return gpu_id

    def _try_open(self, nv: Any, dev: NvmlDevice, now: float) -> bool:
        """Get the handle and static facts of a GPU; a GPU lost now is retried next sample."""
        try:
            self._open_device(nv, dev)
            return True
        except (Lost, nv.NVMLError) as exc:
            dev.handle = None
            self._errors.unreachable(dev, str(exc), now)
            return False

    def _open_device(self, nv: Any, dev: NvmlDevice) -> None:
        index = dev.index
        dev.handle = nv.nvmlDeviceGetHandleByIndex(index)
        q = self._query
        dev.name = text(q(dev, "name", nv.nvmlDeviceGetName, dev.handle) or "GPU")
        dev.uuid = text(q(dev, "uuid", nv.nvmlDeviceGetUUID, dev.handle))
        cc = q(dev, "compute_capability", nv.nvmlDeviceGetCudaComputeCapability, dev.handle)
        if cc is not None:
            dev.compute_capability = (int(cc[0]), int(cc[1]))
        pci = q(dev, "pci_info", nv.nvmlDeviceGetPciInfo, dev.handle)
        if dev.uuid is not None:
            self._ids.setdefault(dev.uuid, dev.gpu_id)
        dev.details.update(
            index=index,
            uuid=dev.uuid,
            pci_bus_id=text(getattr(pci, "busId", None)) if pci is not None else None,
        )
        if self._events and dev.event_set is None:
            dev.event_set = self._errors.register(nv, dev)
        dev.details["xid_events"] = dev.event_set is not None

    def _close(self) -> None:
        with self._lock:
            if self._devices is None:
                return
            nv = self._nvml
            for dev in self._devices:
                self._errors.free(nv, dev)
            with contextlib.suppress(Exception):
                nv.nvmlShutdown()
            self._devices = None

    # -- reading ---------------------------------------------------------------------------

    def _query(self, dev: NvmlDevice, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        return query(self._nvml, dev, key, fn, *args)

    def _read(self, dev: NvmlDevice, now: float) -> GpuState:
        new_error = False
        try:
            if dev.handle is None and not self._try_open(self._nvml, dev, now):
                raise Lost("no handle")
            state, new_error = self._read_device(dev, now)
        except Lost as exc:
            self._errors.unreachable(dev, str(exc), now)
            new_error = True
            base = dev.last or GpuState(gpu_id=dev.gpu_id, name=dev.name)
            state = replace(base, sampled_at=now)
        dev.recent.append(new_error)
        while len(dev.recent) > self._window:
            dev.recent.popleft()
        if dev.held:
            state = replace(state, status=GpuStatus.ERROR, error_rate=1.0)
        else:
            state = replace(state, error_rate=sum(dev.recent) / len(dev.recent))
        dev.details["hard_signals"] = dict(dev.held)
        dev.last = state
        return state

    def _read_device(self, dev: NvmlDevice, now: float) -> tuple[GpuState, bool]:
        nv, q, h = self._nvml, self._query, dev.handle
        new_error = self._errors.drain_events(nv, dev, now)
        mem = q(dev, "memory_info", nv.nvmlDeviceGetMemoryInfo, h)
        util = q(dev, "utilization", nv.nvmlDeviceGetUtilizationRates, h)
        temp = q(dev, "temperature", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        power_mw = q(dev, "power_usage", nv.nvmlDeviceGetPowerUsage, h)
        limit_mw = q(dev, "power_limit", nv.nvmlDeviceGetEnforcedPowerLimit, h)
        if limit_mw is None:
            limit_mw = q(dev, "power_mgmt_limit", nv.nvmlDeviceGetPowerManagementLimit, h)
        ecc_unc = q(
            dev,
            "ecc_uncorrected",
            nv.nvmlDeviceGetTotalEccErrors,
            h,
            nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            nv.NVML_VOLATILE_ECC,
        )
        ecc_cor = q(
            dev,
            "ecc_corrected",
            nv.nvmlDeviceGetTotalEccErrors,
            h,
            nv.NVML_MEMORY_ERROR_TYPE_CORRECTED,
            nv.NVML_VOLATILE_ECC,
        )
        rows = q(dev, "remapped_rows", nv.nvmlDeviceGetRemappedRows, h)
        sm = q(dev, "clock_sm", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
        if "clock_sm_max" not in dev.details:
            dev.details["clock_sm_max"] = q(
                dev, "clock_sm_max", nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM
            )
        fan = q(dev, "fan_speed", nv.nvmlDeviceGetFanSpeed, h)

        if self._errors.check_counters(dev, ecc_unc, ecc_cor, rows, now):
            new_error = True

        if mem is not None:
            dev.memory_total_mb = mem.total / MB
        dev.details.update(
            memory_used_mb=None if mem is None else mem.used / MB,
            clock_sm=sm,
            fan_speed=fan,
            ecc_uncorrected=ecc_unc,
            ecc_corrected=ecc_cor,
            remapped_rows=None if rows is None else list(rows),
        )
        values: dict[str, Any] = {}
        if dev.memory_total_mb:
            values["memory_total_mb"] = dev.memory_total_mb
        if mem is not None:
            values["memory_used_mb"] = mem.used / MB
        if util is not None:
            values["utilization_pct"] = float(min(100, max(0, util.gpu)))
        if temp is not None:
            values["temperature_c"] = float(temp)
        if power_mw is not None:
            values["power_w"] = power_mw / 1000.0
        if limit_mw:
            values["power_limit_w"] = limit_mw / 1000.0
        state = GpuState(
            gpu_id=dev.gpu_id,
            name=dev.name,
            compute_capability=dev.compute_capability,
            speed=self._speed.get(dev.name, 1.0),
            slots=self._slots,
            sampled_at=now,
            **values,
        )
        return state, new_error
