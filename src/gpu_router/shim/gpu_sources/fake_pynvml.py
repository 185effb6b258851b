"""A stand-in for nvidia-ml-py's ``pynvml`` module that replays a real capture.

``FakePynvml()`` answers the NVML calls the sampler makes with the readings of
``data/fixtures/nvml_h100_capture.json`` (one H100 80GB HBM3; see ``fixtures/README.md``):
memory in bytes, power in mW, compute capability as a pair, ECC counters, remapped
rows. Queries the capture lists under ``errors`` (fan speed, retired pages) raise
``NVMLError_NotSupported`` as the real GPU did. ``at(t)`` switches the dynamic
readings (utilization, memory used, power, temperature, SM clock) to the capture's
20 ms time series at ``t`` seconds. ``inject_xid``, ``set_reading``, ``set_error``
and ``lose_gpu`` inject faults. ``plug`` and ``unplug`` change the devices NVML
enumerates at run time (hot-plug, ``nvmlDeviceRemoveGpu``/``DiscoverGpus``): indices
after an unplugged one shift down, as NVML's enumeration does; an unplugged device's
handle answers ``NVMLError_GpuIsLost``. ``calls`` counts calls by function name.
"""

from __future__ import annotations

import copy
import json
import threading
from bisect import bisect_right
from collections import Counter, deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gpu_router.resources import data_dir

from . import fake_nvml_defs
from .fake_nvml_defs import (
    NVML_CLOCK_SM,
    SUPPORTED_EVENTS,
    NVMLError,
    NVMLError_GpuIsLost,
    NVMLError_InvalidArgument,
    NVMLError_NotSupported,
    NVMLError_Timeout,
    NVMLError_Uninitialized,
    NVMLError_Unknown,
    nvmlEventTypeXidCriticalError,
)

CAPTURE = "nvml_h100_capture.json"


#: series field -> reading it overrides while replaying the series
_SERIES_FIELDS = ("gpu_util", "mem_util", "mem_used_mb", "power_w", "temp_c", "sm_mhz")


def load_capture(path: str | Path | None = None) -> dict[str, Any]:
    """The capture as a dict: ``data/fixtures/`` (see ``gpu_router.resources``) unless
    ``path`` names another."""
    file = Path(path) if path is not None else data_dir() / "fixtures" / CAPTURE
    return json.loads(file.read_text("utf-8"))


class FakeHandle:
    """A device handle; handles compare by identity, as ctypes pointers do. ``index`` is
    the device's index now (-1 once it was unplugged)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"FakeHandle({self.index})"


class FakeEventSet:
    def __init__(self) -> None:
        self.registered: dict[int, int] = {}  # device index -> event mask
        self.queue: deque[SimpleNamespace] = deque()
        self.freed = False


class FakePynvml:
    """Module-like replay of a capture. Thread-safe; one instance per test."""

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown

    def __init__(
        self,
        capture: dict[str, Any] | str | Path | None = None,
        *,
        device_count: int | None = None,
        xid_supported: bool | None = None,
    ) -> None:
        data = capture if isinstance(capture, dict) else load_capture(capture)
        self.capture = data
        base = data["devices"]
        n = len(base) if device_count is None else device_count
        self._xid_supported = xid_supported
        self._made = 0  # devices made so far: each clone gets an identity of its own
        self._devices: list[dict[str, Any]] = [self._make_device() for _ in range(n)]
        self._handles = [FakeHandle(i) for i in range(n)]
        self._series = data.get("series", [])
        self._series_t = [p["t"] for p in self._series]
        self._t: float | None = None
        self._lost: set[int] = set()
        self._sets: list[FakeEventSet] = []
        self._lock = threading.Lock()
        self._initialized = 0
        self.calls: Counter[str] = Counter()
        # copy the module-level constants onto the instance so it looks like the module
        for name, value in vars(fake_nvml_defs).items():
            if name.startswith(("NVML_", "nvmlEventType")):
                setattr(self, name, value)

    def _make_device(self) -> dict[str, Any]:
        base = self.capture["devices"]
        i = self._made
        self._made += 1
        dev = copy.deepcopy(base[i % len(base)])
        if i >= len(base):  # clones get their own identity
            r = dev["readings"]
            r["uuid"] = r["uuid"][:-12] + f"{i + 1:012d}"
            r["pci_info"]["busId"] = f"00000000:00:{6 + i:02X}.0"
        if self._xid_supported is not None:
            dev["xid_events"] = "supported" if self._xid_supported else "not supported"
        return dev

    # -- fault and time injection ----------------------------------------------------

    def plug(self, device: dict[str, Any] | None = None) -> int:
        """A GPU appears at the end of the enumeration (a new one, or ``device`` as
        ``unplug`` returned it: the same UUID back); its index."""
        with self._lock:
            self._devices.append(device if device is not None else self._make_device())
            self._handles.append(FakeHandle(len(self._handles)))
            return len(self._devices) - 1

    def unplug(self, index: int) -> dict[str, Any]:
        """The GPU at ``index`` leaves the enumeration; the ones after it shift down one.
        Its old handle answers ``NVMLError_GpuIsLost``; returns the device (to ``plug``)."""
        with self._lock:
            dev = self._devices.pop(index)
            gone = self._handles.pop(index)
            gone.index = -1
            for h in self._handles[index:]:
                h.index -= 1
            self._lost = {i - (i > index) for i in self._lost if i != index}
            for es in self._sets:
                es.registered = {i - (i > index): m for i, m in es.registered.items() if i != index}
            return dev

    def at(self, t: float | None) -> FakePynvml:
        """Replay the time series at ``t`` seconds (None: the static readings)."""
        self._t = t
        return self

    def set_reading(self, index: int, key: str, value: Any) -> None:
        self._devices[index]["readings"][key] = value
        self._devices[index]["errors"].pop(key, None)

    def set_error(self, index: int, key: str, message: str = "NVMLError: Not Supported") -> None:
        self._devices[index]["errors"][key] = message

    def lose_gpu(self, index: int, lost: bool = True) -> None:
        """Every call on this device raises ``NVMLError_GpuIsLost`` (Xid 79, fell off the bus)."""
        (self._lost.add if lost else self._lost.discard)(index)

    def inject_event(self, index: int, event_type: int, data: int = 0) -> int:
        """Queue an event on every set registered for it; returns how many sets got it."""
        event = SimpleNamespace(
            device=self._handles[index],
            eventType=event_type,
            eventData=data,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )
        delivered = 0
        with self._lock:
            for es in self._sets:
                if not es.freed and es.registered.get(index, 0) & event_type:
                    es.queue.append(event)
                    delivered += 1
        return delivered

    def inject_xid(self, index: int, xid: int) -> int:
        return self.inject_event(index, nvmlEventTypeXidCriticalError, xid)

    # -- helpers -----------------------------------------------------------------------

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if not self._initialized:
            raise NVMLError_Uninitialized()

    def _dev(self, name: str, handle: FakeHandle) -> dict[str, Any]:
        self._call(name)
        if not isinstance(handle, FakeHandle) or handle.index >= len(self._devices):
            raise NVMLError_InvalidArgument()
        if handle.index < 0 or handle.index in self._lost:  # unplugged, or fell off the bus
            raise NVMLError_GpuIsLost()
        return self._devices[handle.index]

    def _reading(self, name: str, handle: FakeHandle, key: str) -> Any:
        dev = self._dev(name, handle)
        if key in dev["errors"]:
            raise NVMLError_NotSupported()
        return dev["readings"][key]

    def _point(self) -> dict[str, Any] | None:
        if self._t is None or not self._series:
            return None
        i = max(0, bisect_right(self._series_t, self._t) - 1)
        return self._series[i]

    # -- the pynvml API the sampler uses -------------------------------------------------

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.calls["nvmlInit"] += 1
        self._initialized += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._call("nvmlShutdown")
        self._initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._call("nvmlSystemGetDriverVersion")
        return self.capture.get("driver", "")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._call("nvmlDeviceGetCount")
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:  # noqa: N802
        self._call("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self._handles):
            raise NVMLError_InvalidArgument()
        if index in self._lost:
            raise NVMLError_GpuIsLost()
        return self._handles[index]

    def nvmlDeviceGetName(self, h: FakeHandle) -> str:  # noqa: N802
        return self._reading("nvmlDeviceGetName", h, "name")

    def nvmlDeviceGetUUID(self, h: FakeHandle) -> str:  # noqa: N802
        return self._reading("nvmlDeviceGetUUID", h, "uuid")

    def nvmlDeviceGetSerial(self, h: FakeHandle) -> str:  # noqa: N802
        return self._reading("nvmlDeviceGetSerial", h, "serial")

    def nvmlDeviceGetMemoryInfo(self, h: FakeHandle, version: Any = None) -> SimpleNamespace:  # noqa: N802
        m = dict(self._reading("nvmlDeviceGetMemoryInfo", h, "memory_info"))
        p = self._point()
        if p is not None:
            m["used"] = int(p["mem_used_mb"] * 2**20)
            m["free"] = m["total"] - m["used"]
        return SimpleNamespace(**m)

    def nvmlDeviceGetUtilizationRates(self, h: FakeHandle) -> SimpleNamespace:  # noqa: N802
        u = dict(self._reading("nvmlDeviceGetUtilizationRates", h, "utilization"))
        p = self._point()
        if p is not None:
            u = {"gpu": p["gpu_util"], "memory": p["mem_util"]}
        return SimpleNamespace(**u)

    def nvmlDeviceGetTemperature(self, h: FakeHandle, sensor: int) -> int:  # noqa: N802
        value = self._reading("nvmlDeviceGetTemperature", h, "temperature_gpu")
        p = self._point()
        return p["temp_c"] if p is not None else value

    def nvmlDeviceGetTemperatureThreshold(self, h: FakeHandle, kind: int) -> int:  # noqa: N802
        key = "temp_threshold_slowdown" if kind == 1 else "temp_threshold_shutdown"
        return self._reading("nvmlDeviceGetTemperatureThreshold", h, key)

    def nvmlDeviceGetPowerUsage(self, h: FakeHandle) -> int:  # noqa: N802
        value = self._reading("nvmlDeviceGetPowerUsage", h, "power_usage_mw")
        p = self._point()
        return round(p["power_w"] * 1000) if p is not None else value

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeHandle) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetEnforcedPowerLimit", h, "power_limit_mw")

    def nvmlDeviceGetPowerManagementLimit(self, h: FakeHandle) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetPowerManagementLimit", h, "power_mgmt_limit_mw")

    def nvmlDeviceGetCudaComputeCapability(self, h: FakeHandle) -> tuple[int, int]:  # noqa: N802
        major, minor = self._reading("nvmlDeviceGetCudaComputeCapability", h, "compute_capability")
        return (major, minor)

    def nvmlDeviceGetClockInfo(self, h: FakeHandle, clock: int) -> int:  # noqa: N802
        key = "clock_sm_mhz" if clock == NVML_CLOCK_SM else "clock_mem_mhz"
        value = self._reading("nvmlDeviceGetClockInfo", h, key)
        p = self._point()
        return p["sm_mhz"] if p is not None and clock == NVML_CLOCK_SM else value

    def nvmlDeviceGetMaxClockInfo(self, h: FakeHandle, clock: int) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetMaxClockInfo", h, "max_clock_sm_mhz")

    def nvmlDeviceGetPerformanceState(self, h: FakeHandle) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetPerformanceState", h, "pstate")

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: FakeHandle) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetCurrentClocksEventReasons", h, "throttle_reasons")

    nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons  # noqa: N815 (pynvml's name)

    def nvmlDeviceGetFanSpeed(self, h: FakeHandle) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetFanSpeed", h, "fan_speed")

    def nvmlDeviceGetEccMode(self, h: FakeHandle) -> tuple[int, int]:  # noqa: N802
        current, pending = self._reading("nvmlDeviceGetEccMode", h, "ecc_mode")
        return (current, pending)

    def nvmlDeviceGetTotalEccErrors(self, h: FakeHandle, kind: int, counter: int) -> int:  # noqa: N802
        key = "ecc_uncorrected_volatile" if kind == 1 else "ecc_corrected_volatile"
        return self._reading("nvmlDeviceGetTotalEccErrors", h, key)

    def nvmlDeviceGetRetiredPages(self, h: FakeHandle, cause: int) -> list[int]:  # noqa: N802
        return self._reading("nvmlDeviceGetRetiredPages", h, "retired_pages_dbe")

    def nvmlDeviceGetRemappedRows(self, h: FakeHandle) -> tuple[int, int, int, int]:  # noqa: N802
        corr, unc, pending, failure = self._reading("nvmlDeviceGetRemappedRows", h, "remapped_rows")
        return (corr, unc, pending, failure)

    def nvmlDeviceGetPciInfo(self, h: FakeHandle) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(**self._reading("nvmlDeviceGetPciInfo", h, "pci_info"))

    def nvmlDeviceGetMigMode(self, h: FakeHandle) -> tuple[int, int]:  # noqa: N802
        current, pending = self._reading("nvmlDeviceGetMigMode", h, "mig_mode")
        return (current, pending)

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeHandle) -> list[Any]:  # noqa: N802
        return list(self._reading("nvmlDeviceGetComputeRunningProcesses", h, "compute_processes"))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeHandle) -> int:  # noqa: N802
        return self._reading("nvmlDeviceGetTotalEnergyConsumption", h, "total_energy_mj")

    # -- events ------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> FakeEventSet:  # noqa: N802
        self._call("nvmlEventSetCreate")
        es = FakeEventSet()
        with self._lock:
            self._sets.append(es)
        return es

    def nvmlDeviceGetSupportedEventTypes(self, h: FakeHandle) -> int:  # noqa: N802
        dev = self._dev("nvmlDeviceGetSupportedEventTypes", h)
        return SUPPORTED_EVENTS if dev.get("xid_events") == "supported" else 0

    def nvmlDeviceRegisterEvents(self, h: FakeHandle, mask: int, es: FakeEventSet) -> None:  # noqa: N802
        dev = self._dev("nvmlDeviceRegisterEvents", h)
        if dev.get("xid_events") != "supported" or mask & ~SUPPORTED_EVENTS:
            raise NVMLError_NotSupported()
        with self._lock:
            es.registered[h.index] = es.registered.get(h.index, 0) | mask

    def nvmlEventSetWait_v2(self, es: FakeEventSet, timeoutms: int) -> SimpleNamespace:  # noqa: N802
        self._call("nvmlEventSetWait")
        with self._lock:
            if es.queue:
                return es.queue.popleft()
        raise NVMLError_Timeout()  # a fake never blocks

    nvmlEventSetWait = nvmlEventSetWait_v2  # noqa: N815 (pynvml's name)

    def nvmlEventSetFree(self, es: FakeEventSet) -> None:  # noqa: N802
        self._call("nvmlEventSetFree")
        es.freed = True
