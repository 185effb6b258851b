"""GPU state from NVML through nvidia-ml-py's ``pynvml`` (DESIGN 5.2).

Each ``sample()`` reads every GPU (in a worker thread: first calls of a kind can take
milliseconds) and returns ``GpuState`` snapshots: memory in MB (bytes / 2**20),
utilization %, temperature C, power and enforced limit in W (mW / 1000), compute
capability. A query a GPU answers with ``NVMLError_NotSupported`` is absent, never a
failure, and is not asked again. Error signals (``drain_signals()``):

- Xid events (``nvmlEventSetCreate`` / ``nvmlDeviceRegisterEvents`` /
  ``nvmlEventSetWait`` with a 0 ms timeout, one event set per GPU, where supported):
  a critical Xid (``policy.health.CRITICAL_XIDS``) is a hard ``xid_critical`` signal
  and puts the GPU in ``error`` until ``clear(gpu_id)``; other Xids (application
  faults such as 13, 31, 43) are soft;
- uncorrectable ECC (volatile count > 0, or a double-bit ECC event): hard, ``error``
  while the count stays up (it resets with the GPU);
- remapped rows: a remapping failure is hard; a pending remap is soft;
- ``NVMLError_GpuIsLost`` on any call: hard ``unreachable`` until ``clear(gpu_id)``.

``error_rate`` is the share of the last ``error_window`` samples in which a new error
appeared (1.0 while a hard signal holds). ``pynvml`` is imported only when no module
is passed in, so machines without a GPU never load it (tests pass ``FakePynvml``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gpu_router.policy import GpuState, GpuStatus, HardSignal, is_critical_xid

from .base import (
    ErrorSignal,
    JobRunner,
    SignalLog,
    SourceUnavailable,
    WorkerUnavailable,
    positive_period,
    static_worker_urls,
)

log = logging.getLogger(__name__)

MB = 2**20
_XID = 0x8  # nvmlEventTypeXidCriticalError
_SBE = 0x1  # nvmlEventTypeSingleBitEccError
_DBE = 0x2  # nvmlEventTypeDoubleBitEccError
_MAX_EVENTS_PER_SAMPLE = 256


class _Lost(Exception):
    """A call answered NVMLError_GpuIsLost."""


@dataclass
class _Device:
    index: int
    gpu_id: str
    handle: Any
    name: str = "GPU"
    uuid: str | None = None
    compute_capability: tuple[int, int] = (0, 0)
    memory_total_mb: float | None = None
    event_set: Any = None
    unsupported: set[str] = field(default_factory=set)
    ecc_corrected: int | None = None
    held: dict[str, str] = field(default_factory=dict)  # latched hard signals: kind -> detail
    recent: deque[bool] = field(default_factory=deque)
    last: GpuState | None = None
    details: dict[str, Any] = field(default_factory=dict)


class NvmlSource:
    """Samples the GPUs NVML sees. ``nvml``: a pynvml-like module (default: import pynvml)."""

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
    ) -> None:
        self.period_s = positive_period("period_s", period_s)
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
        self._devices: list[_Device] | None = None
        self._signals = SignalLog()
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
                import pynvml  # noqa: PLC0415 - only where NVML is used
            except ImportError as exc:  # pragma: no cover - it is a dependency
                raise SourceUnavailable(f"nvidia-ml-py is not installed: {exc}") from exc
            self._nvml = pynvml
        return self._nvml

    def _open(self) -> list[_Device]:
        if self._devices is not None:
            return self._devices
        nv = self._module()
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise SourceUnavailable(f"NVML could not start: {exc}") from exc
        try:
            self.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001 - informational only
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
            dev = _Device(i, f"{self._id_prefix}{i}", None)
            self._try_open(nv, dev, self._clock())
            devices.append(dev)
        self._devices = devices
        return devices

    def _try_open(self, nv: Any, dev: _Device, now: float) -> bool:
        """Get the handle and static facts of a GPU; a GPU lost now is retried next sample."""
        try:
            self._open_device(nv, dev)
            return True
        except (_Lost, nv.NVMLError) as exc:
            dev.handle = None
            if HardSignal.UNREACHABLE.value not in dev.held:
                self._signal(dev, HardSignal.UNREACHABLE.value, True, f"NVML: {exc}", now)
            return False

    def _open_device(self, nv: Any, dev: _Device) -> None:
        index = dev.index
        dev.handle = nv.nvmlDeviceGetHandleByIndex(index)
        q = self._query
        dev.name = _text(q(dev, "name", nv.nvmlDeviceGetName, dev.handle) or "GPU")
        dev.uuid = _text(q(dev, "uuid", nv.nvmlDeviceGetUUID, dev.handle))
        cc = q(dev, "compute_capability", nv.nvmlDeviceGetCudaComputeCapability, dev.handle)
        if cc is not None:
            dev.compute_capability = (int(cc[0]), int(cc[1]))
        pci = q(dev, "pci_info", nv.nvmlDeviceGetPciInfo, dev.handle)
        dev.details.update(
            index=index,
            uuid=dev.uuid,
            pci_bus_id=_text(getattr(pci, "busId", None)) if pci is not None else None,
        )
        if self._events and dev.event_set is None:
            dev.event_set = self._register_events(nv, dev)
        dev.details["xid_events"] = dev.event_set is not None

    def _register_events(self, nv: Any, dev: _Device) -> Any:
        try:
            supported = nv.nvmlDeviceGetSupportedEventTypes(dev.handle)
            mask = supported & (_XID | _SBE | _DBE)
            if not mask & _XID:
                return None
            es = nv.nvmlEventSetCreate()
            try:
                nv.nvmlDeviceRegisterEvents(dev.handle, mask, es)
            except Exception:
                nv.nvmlEventSetFree(es)
                raise
            return es
        except Exception as exc:  # noqa: BLE001 - NotSupported, NoPermission: no events then
            log.info("Xid events unavailable on %s: %s", dev.gpu_id, exc)
            return None

    def _close(self) -> None:
        with self._lock:
            if self._devices is None:
                return
            nv = self._nvml
            for dev in self._devices:
                if dev.event_set is not None:
                    with contextlib.suppress(Exception):  # best effort on shutdown
                        nv.nvmlEventSetFree(dev.event_set)
            with contextlib.suppress(Exception):
                nv.nvmlShutdown()
            self._devices = None

    # -- reading ---------------------------------------------------------------------------

    def _query(self, dev: _Device, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """One NVML call: None when unsupported (then never asked again) or failing."""
        if key in dev.unsupported:
            return None
        nv = self._nvml
        try:
            return fn(*args)
        except nv.NVMLError_NotSupported:
            dev.unsupported.add(key)
            dev.details["unsupported"] = sorted(dev.unsupported)
            return None
        except nv.NVMLError_GpuIsLost as exc:
            raise _Lost(str(exc)) from exc
        except nv.NVMLError as exc:
            log.debug("%s: %s failed: %s", dev.gpu_id, key, exc)
            return None

    def _signal(
        self, dev: _Device, kind: str, hard: bool, detail: str, now: float, code: int | None = None
    ) -> None:
        self._signals.add(ErrorSignal(dev.gpu_id, kind, hard, detail, now, code))
        if hard:
            dev.held[kind] = detail

    def _read(self, dev: _Device, now: float) -> GpuState:
        new_error = False
        try:
            if dev.handle is None and not self._try_open(self._nvml, dev, now):
                raise _Lost("no handle")
            state, new_error = self._read_device(dev, now)
        except _Lost as exc:
            if HardSignal.UNREACHABLE.value not in dev.held:
                self._signal(dev, HardSignal.UNREACHABLE.value, True, f"NVML: {exc}", now)
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

    def _read_device(self, dev: _Device, now: float) -> tuple[GpuState, bool]:
        nv, q, h = self._nvml, self._query, dev.handle
        new_error = self._drain_events(dev, now)
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

        if ecc_unc:
            kind = HardSignal.ECC_UNCORRECTABLE.value
            if kind not in dev.held:
                self._signal(dev, kind, True, f"{ecc_unc} uncorrectable ECC errors", now)
                new_error = True
        elif ecc_unc == 0 and "dbe_event" not in dev.details:
            dev.held.pop(HardSignal.ECC_UNCORRECTABLE.value, None)  # cleared by a GPU reset
        if ecc_cor is not None:
            if dev.ecc_corrected is not None and ecc_cor > dev.ecc_corrected:
                self._signal(
                    dev,
                    "ecc_corrected",
                    False,
                    f"+{ecc_cor - dev.ecc_corrected} corrected ECC errors",
                    now,
                )
                new_error = True
            dev.ecc_corrected = ecc_cor
        if rows is not None:
            _corr, _unc, pending, failure = rows
            if failure and "row_remap_failure" not in dev.held:
                self._signal(dev, "row_remap_failure", True, "row remapping failed", now)
                new_error = True
            if pending and not dev.details.get("row_remap_pending"):
                self._signal(dev, "row_remap_pending", False, "row remap pending a reset", now)
                new_error = True
            dev.details["row_remap_pending"] = bool(pending)

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

    def _drain_events(self, dev: _Device, now: float) -> bool:
        if dev.event_set is None:
            return False
        nv = self._nvml
        seen = False
        for _ in range(_MAX_EVENTS_PER_SAMPLE):
            try:
                ev = nv.nvmlEventSetWait(dev.event_set, 0)
            except nv.NVMLError_Timeout:
                break
            except nv.NVMLError_GpuIsLost as exc:
                raise _Lost(str(exc)) from exc
            except nv.NVMLError as exc:
                log.debug("%s: event wait failed: %s", dev.gpu_id, exc)
                break
            seen = True
            etype, data = int(ev.eventType), int(ev.eventData)
            if etype & _XID:
                if is_critical_xid(data):
                    self._signal(
                        dev, HardSignal.XID_CRITICAL.value, True, f"Xid {data}", now, code=data
                    )
                else:
                    self._signal(dev, "xid", False, f"Xid {data}", now, code=data)
                dev.details.setdefault("xids", []).append(data)
                del dev.details["xids"][:-20]
            elif etype & _DBE:
                dev.details["dbe_event"] = True
                self._signal(
                    dev, HardSignal.ECC_UNCORRECTABLE.value, True, "double-bit ECC error event", now
                )
            elif etype & _SBE:
                self._signal(dev, "ecc_corrected", False, "single-bit ECC error event", now)
        return seen


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
