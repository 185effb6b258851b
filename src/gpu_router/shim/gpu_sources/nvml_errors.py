"""The NVML source's error signals: Xid and ECC events, ECC counters and remapped rows.

- Xid events (``nvmlEventSetCreate`` / ``nvmlDeviceRegisterEvents`` /
  ``nvmlEventSetWait`` with a 0 ms timeout, one event set per GPU, where supported):
  a critical Xid (``policy.health.CRITICAL_XIDS``) is a hard ``xid_critical`` signal
  and latches until ``clear(gpu_id)``; other Xids (application faults such as 13, 31,
  43) are soft;
- uncorrectable ECC (volatile count > 0, or a double-bit ECC event): hard, latched while
  the count stays up (it resets with the GPU); more corrected errors: soft;
- remapped rows: a remapping failure is hard; a pending remap is soft.

A hard signal is latched in ``NvmlDevice.held``; every signal goes to the source's
:class:`~.base.SignalLog` for ``drain_signals()``. Times are the source's clock (s).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from gpu_router.policy import HardSignal, is_critical_xid

from .base import ErrorSignal, SignalLog
from .nvml_device import Lost, NvmlDevice

log = logging.getLogger(__name__)

XID = 0x8  # nvmlEventTypeXidCriticalError
SBE = 0x1  # nvmlEventTypeSingleBitEccError
DBE = 0x2  # nvmlEventTypeDoubleBitEccError
MAX_EVENTS_PER_SAMPLE = 256


class NvmlErrors:
    """Turns NVML events and counters of each GPU into signals (and latches hard ones)."""

    def __init__(self, signals: SignalLog) -> None:
        self.signals = signals

    def signal(
        self,
        dev: NvmlDevice,
        kind: str,
        hard: bool,
        detail: str,
        now: float,
        code: int | None = None,
    ) -> None:
        self.signals.add(ErrorSignal(dev.gpu_id, kind, hard, detail, now, code))
        if hard:
            dev.held[kind] = detail

    def unreachable(self, dev: NvmlDevice, detail: str, now: float) -> None:
        """The GPU is lost: a hard ``unreachable`` signal, once until cleared."""
        if HardSignal.UNREACHABLE.value not in dev.held:
            self.signal(dev, HardSignal.UNREACHABLE.value, True, f"NVML: {detail}", now)

    # -- events ----------------------------------------------------------------------------

    @staticmethod
    def register(nv: Any, dev: NvmlDevice) -> Any:
        """An event set for the GPU's Xid (and ECC) events; None where unsupported."""
        try:
            supported = nv.nvmlDeviceGetSupportedEventTypes(dev.handle)
            mask = supported & (XID | SBE | DBE)
            if not mask & XID:
                return None
            es = nv.nvmlEventSetCreate()
            try:
                nv.nvmlDeviceRegisterEvents(dev.handle, mask, es)
            except Exception:
                nv.nvmlEventSetFree(es)
                raise
            return es
        except Exception as exc:
            log.info("Xid events unavailable on %s: %s", dev.gpu_id, exc)
            return None

    @staticmethod
    def free(nv: Any, dev: NvmlDevice) -> None:
        """Free the GPU's event set (best effort, on shutdown)."""
        if dev.event_set is not None:
            with contextlib.suppress(Exception):
                nv.nvmlEventSetFree(dev.event_set)

    def drain_events(self, nv: Any, dev: NvmlDevice, now: float) -> bool:
        """Signal the events waiting on the GPU's set; whether there were any."""
        if dev.event_set is None:
            return False
        seen = False
        for _ in range(MAX_EVENTS_PER_SAMPLE):
            try:
                ev = nv.nvmlEventSetWait(dev.event_set, 0)
            except nv.NVMLError_Timeout:
                break
            except nv.NVMLError_GpuIsLost as exc:
                raise Lost(str(exc)) from exc
            except nv.NVMLError as exc:
                log.debug("%s: event wait failed: %s", dev.gpu_id, exc)
                break
            seen = True
            etype, data = int(ev.eventType), int(ev.eventData)
            if etype & XID:
                if is_critical_xid(data):
                    self.signal(
                        dev, HardSignal.XID_CRITICAL.value, True, f"Xid {data}", now, code=data
                    )
                else:
                    self.signal(dev, "xid", False, f"Xid {data}", now, code=data)
                dev.details.setdefault("xids", []).append(data)
                del dev.details["xids"][:-20]
            elif etype & DBE:
                dev.details["dbe_event"] = True
                self.signal(
                    dev, HardSignal.ECC_UNCORRECTABLE.value, True, "double-bit ECC error event", now
                )
            elif etype & SBE:
                self.signal(dev, "ecc_corrected", False, "single-bit ECC error event", now)
        return seen

    # -- counters --------------------------------------------------------------------------

    def check_counters(
        self,
        dev: NvmlDevice,
        ecc_unc: int | None,
        ecc_cor: int | None,
        rows: Any,
        now: float,
    ) -> bool:
        """Signal new ECC errors and remapped-row trouble; whether a new error appeared.
        ``rows``: ``(corrected, uncorrected, pending, failure)`` or None."""
        new_error = False
        if ecc_unc:
            kind = HardSignal.ECC_UNCORRECTABLE.value
            if kind not in dev.held:
                self.signal(dev, kind, True, f"{ecc_unc} uncorrectable ECC errors", now)
                new_error = True
        elif ecc_unc == 0 and "dbe_event" not in dev.details:
            dev.held.pop(HardSignal.ECC_UNCORRECTABLE.value, None)  # cleared by a GPU reset
        if ecc_cor is not None:
            if dev.ecc_corrected is not None and ecc_cor > dev.ecc_corrected:
                self.signal(
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
                self.signal(dev, "row_remap_failure", True, "row remapping failed", now)
                new_error = True
            if pending and not dev.details.get("row_remap_pending"):
                self.signal(dev, "row_remap_pending", False, "row remap pending a reset", now)
                new_error = True
            dev.details["row_remap_pending"] = bool(pending)
        return new_error
