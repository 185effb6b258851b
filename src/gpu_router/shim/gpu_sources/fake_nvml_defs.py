"""The error classes and constants of pynvml that :mod:`.fake_pynvml` answers with.

Same names and values as nvidia-ml-py's; ``value`` of an error is the NVML return code.
"""

from __future__ import annotations

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Same shape as pynvml's: ``value`` is the NVML return code."""

    code = NVML_ERROR_UNKNOWN
    text = "Unknown Error"

    def __init__(self, value: int | None = None) -> None:
        self.value = self.code if value is None else value
        super().__init__(self.value)

    def __str__(self) -> str:
        return self.text


class NVMLError_Uninitialized(NVMLError):  # noqa: N801 - pynvml's names
    code, text = NVML_ERROR_UNINITIALIZED, "Uninitialized"


class NVMLError_InvalidArgument(NVMLError):  # noqa: N801
    code, text = NVML_ERROR_INVALID_ARGUMENT, "Invalid Argument"


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    code, text = NVML_ERROR_NOT_SUPPORTED, "Not Supported"


class NVMLError_Timeout(NVMLError):  # noqa: N801
    code, text = NVML_ERROR_TIMEOUT, "Timeout"


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    code, text = NVML_ERROR_GPU_IS_LOST, "GPU is lost"


class NVMLError_Unknown(NVMLError):  # noqa: N801
    code, text = NVML_ERROR_UNKNOWN, "Unknown Error"


NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1

nvmlEventTypeSingleBitEccError = 0x1  # noqa: N816 - pynvml's names
nvmlEventTypeDoubleBitEccError = 0x2  # noqa: N816
nvmlEventTypePState = 0x4  # noqa: N816
nvmlEventTypeXidCriticalError = 0x8  # noqa: N816
nvmlEventTypeClock = 0x10  # noqa: N816
nvmlEventTypeNone = 0x0  # noqa: N816

#: the event types every fake device supports (when Xid events are)
SUPPORTED_EVENTS = (
    nvmlEventTypeSingleBitEccError
    | nvmlEventTypeDoubleBitEccError
    | nvmlEventTypePState
    | nvmlEventTypeXidCriticalError
    | nvmlEventTypeClock
)
