"""The NVML sampler against the fake pynvml replaying the H100 capture."""

from __future__ import annotations

import asyncio

import pytest

from gpu_router.policy.types import GpuStatus
from gpu_router.shim.gpu_sources.base import GpuSource, SourceUnavailable, WorkerUnavailable
from gpu_router.shim.gpu_sources.fake_pynvml import FakePynvml
from gpu_router.shim.gpu_sources.nvml import NvmlSource

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(fake: FakePynvml | None = None, **kw) -> tuple[NvmlSource, FakePynvml, Clock]:
    fake = fake or FakePynvml()
    clock = Clock()
    return NvmlSource(fake, clock=clock, in_thread=False, **kw), fake, clock


def test_snapshot_has_exact_values_of_the_capture() -> None:
    src, _, _ = make()
    [g] = src.sample_sync()
    assert g.gpu_id == "gpu-0"
    assert g.name == "NVIDIA H100 80GB HBM3"
    assert g.memory_total_mb == 85520809984 / 2**20 == 81559.0
    assert g.memory_used_mb == 480.0
    assert g.utilization_pct == 0.0
    assert g.temperature_c == 38.0
    assert g.power_w == pytest.approx(122.454)
    assert g.power_limit_w == 700.0
    assert g.compute_capability == (9, 0)
    assert g.status is GpuStatus.ACTIVE
    assert g.error_rate == 0.0
    assert g.sampled_at == 100.0


def test_not_supported_queries_are_absent_and_not_asked_again() -> None:
    src, fake, _ = make()
    src.sample_sync()
    src.sample_sync()
    details = src.details("gpu-0")
    assert details["fan_speed"] is None
    assert "fan_speed" in details["unsupported"]
    assert fake.calls["nvmlDeviceGetFanSpeed"] == 1  # NotSupported once, then never again
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 2
    assert src.drain_signals() == []
    assert details["uuid"] == "GPU-5f3c2a10-0000-4000-8000-000000000001"
    assert details["pci_bus_id"] == "00000000:00:06.0"
    assert details["ecc_uncorrected"] == 0
    assert details["remapped_rows"] == [0, 0, 0, 0]
    assert details["xid_events"] is True


def test_required_query_not_supported_leaves_default_not_failure() -> None:
    fake = FakePynvml()
    fake.set_error(0, "power_usage_mw")
    fake.set_error(0, "temperature_gpu")
    src, _, _ = make(fake)
    [g] = src.sample_sync()
    assert g.status is GpuStatus.ACTIVE
    assert g.memory_total_mb == 81559.0
    assert g.power_w == 70.0  # GpuState default: the reading is absent
    assert src.drain_signals() == []


def test_series_replay_follows_load_with_lag() -> None:
    fake = FakePynvml().at(0.0)
    src, _, clock = make(fake)
    idle = src.sample_sync()[0]
    assert idle.utilization_pct == 0 and idle.memory_used_mb == 480.0
    fake.at(9.071)
    clock.t += 9.071
    load = src.sample_sync()[0]
    assert load.utilization_pct == 100.0
    assert load.power_w == pytest.approx(699.148)
    assert load.temperature_c == 56.0
    assert load.memory_used_mb == pytest.approx(1618.8, abs=0.01)
    assert load.sampled_at == pytest.approx(109.071)
    # memory appears at once while utilization lags: in 'alloc' util is still ~0
    alloc = [p for p in fake.capture["series"] if p["phase"] == "alloc"]
    fake.at(alloc[0]["t"])
    g = src.sample_sync()[0]
    assert g.memory_used_mb > 480.0 and g.utilization_pct <= 2


def test_critical_xid_is_a_hard_signal_until_cleared() -> None:
    src, fake, _ = make()
    src.sample_sync()
    assert fake.inject_xid(0, 79) == 1
    [g] = src.sample_sync()
    assert g.status is GpuStatus.ERROR and g.error_rate == 1.0
    [sig] = src.drain_signals()
    assert (sig.gpu_id, sig.kind, sig.hard, sig.code) == ("gpu-0", "xid_critical", True, 79)
    assert src.sample_sync()[0].status is GpuStatus.ERROR  # latched
    assert src.drain_signals() == []
    src.clear("gpu-0")
    assert src.sample_sync()[0].status is GpuStatus.ACTIVE


def test_application_xid_is_soft() -> None:
    src, fake, _ = make(error_window=4)
    src.sample_sync()
    fake.inject_xid(0, 31)
    [g] = src.sample_sync()
    assert g.status is GpuStatus.ACTIVE
    assert g.error_rate == pytest.approx(0.5)  # 1 of the last 2 samples
    [sig] = src.drain_signals()
    assert (sig.kind, sig.hard, sig.code) == ("xid", False, 31)
    for _ in range(4):
        g = src.sample_sync()[0]
    assert g.error_rate == 0.0


def test_uncorrectable_ecc_holds_while_count_is_up() -> None:
    src, fake, _ = make()
    fake.set_reading(0, "ecc_uncorrected_volatile", 2)
    assert src.sample_sync()[0].status is GpuStatus.ERROR
    [sig] = src.drain_signals()
    assert sig.kind == "ecc_uncorrectable" and sig.hard
    fake.set_reading(0, "ecc_uncorrected_volatile", 0)  # GPU reset
    assert src.sample_sync()[0].status is GpuStatus.ACTIVE


def test_corrected_ecc_and_remap_signals() -> None:
    src, fake, _ = make()
    src.sample_sync()
    fake.set_reading(0, "ecc_corrected_volatile", 3)
    fake.set_reading(0, "remapped_rows", [1, 0, 1, 0])
    g = src.sample_sync()[0]
    assert g.status is GpuStatus.ACTIVE and g.error_rate > 0
    kinds = {(s.kind, s.hard) for s in src.drain_signals()}
    assert kinds == {("ecc_corrected", False), ("row_remap_pending", False)}
    fake.set_reading(0, "remapped_rows", [1, 0, 0, 1])
    assert src.sample_sync()[0].status is GpuStatus.ERROR
    assert [(s.kind, s.hard) for s in src.drain_signals()] == [("row_remap_failure", True)]


def test_lost_gpu_is_unreachable_and_keeps_last_values() -> None:
    src, fake, clock = make(FakePynvml(device_count=2))
    first = src.sample_sync()
    fake.lose_gpu(1)
    clock.t = 101.0
    a, b = src.sample_sync()
    assert a.status is GpuStatus.ACTIVE
    assert b.status is GpuStatus.ERROR and b.sampled_at == 101.0
    assert b.memory_total_mb == first[1].memory_total_mb
    [sig] = src.drain_signals()
    assert (sig.gpu_id, sig.kind, sig.hard) == ("gpu-1", "unreachable", True)


def test_gpu_lost_before_the_first_sample_is_retried_not_fatal() -> None:
    fake = FakePynvml(device_count=2)
    fake.lose_gpu(0)
    src, _, _ = make(fake)
    a, b = src.sample_sync()
    assert a.status is GpuStatus.ERROR and a.gpu_id == "gpu-0"
    assert b.status is GpuStatus.ACTIVE
    assert [(s.gpu_id, s.kind) for s in src.drain_signals()] == [("gpu-0", "unreachable")]
    fake.lose_gpu(0, False)  # the GPU is back after a reset; the signal holds until cleared
    assert src.sample_sync()[0].status is GpuStatus.ERROR
    src.clear("gpu-0")
    a = src.sample_sync()[0]
    assert a.status is GpuStatus.ACTIVE and a.name == "NVIDIA H100 80GB HBM3"
    assert a.compute_capability == (9, 0) and a.memory_total_mb == 81559.0
    assert fake.calls["nvmlEventSetCreate"] == 2  # one set per GPU, none made twice


def test_no_xid_support_means_no_event_set() -> None:
    src, fake, _ = make(FakePynvml(xid_supported=False))
    src.sample_sync()
    assert src.details("gpu-0")["xid_events"] is False
    assert fake.inject_xid(0, 79) == 0
    assert fake.calls["nvmlEventSetWait"] == 0


def test_multi_gpu_ids_urls_and_indices() -> None:
    fake = FakePynvml(device_count=4)
    src, _, _ = make(
        fake, indices=[1, 3], worker_base_port=9100, worker_urls={"gpu-3": "http://10.0.0.3:9000/"}
    )
    states = src.sample_sync()
    assert [g.gpu_id for g in states] == ["gpu-1", "gpu-3"]
    assert src.worker_url("gpu-1") == "http://127.0.0.1:9101"
    assert src.worker_url("gpu-3") == "http://10.0.0.3:9000"
    assert src.worker_url("other") is None
    with pytest.raises(WorkerUnavailable):
        src.virtual_worker("gpu-1")
    bad, _, _ = make(FakePynvml(), indices=[2])
    with pytest.raises(SourceUnavailable, match="GPU 2"):
        bad.sample_sync()


def test_async_interface_in_thread_and_close() -> None:
    fake = FakePynvml()
    src = NvmlSource(fake, period_s=0.05)
    assert isinstance(src, GpuSource)

    async def go() -> list:
        try:
            return await src.sample()
        finally:
            await src.aclose()

    [g] = asyncio.run(go())
    assert g.compute_capability == (9, 0)
    assert fake.calls["nvmlShutdown"] == 1 and fake.calls["nvmlEventSetFree"] == 1


def test_missing_library_is_source_unavailable() -> None:
    class Broken(FakePynvml):
        def nvmlInit(self) -> None:  # noqa: N802
            raise self.NVMLError(12)

    src, _, _ = make(Broken())
    with pytest.raises(SourceUnavailable, match="NVML could not start"):
        src.sample_sync()


def test_bad_period_is_refused() -> None:
    with pytest.raises(Exception, match="period_s"):
        NvmlSource(FakePynvml(), period_s=0)


def test_rescan_adds_a_plugged_gpu_and_drops_an_unplugged_one_by_uuid() -> None:
    src, fake, clock = make(FakePynvml(device_count=2), rescan_s=5.0, worker_base_port=9100)
    src.sample_sync()
    uuid_1 = src.details("gpu-1")["uuid"]
    fake.plug()
    clock.t = 104.9  # not yet due: the fleet is what the last scan saw
    assert [g.gpu_id for g in src.sample_sync()] == ["gpu-0", "gpu-1"]
    assert fake.calls["nvmlDeviceGetCount"] == 1
    clock.t = 105.0
    states = src.sample_sync()
    assert [g.gpu_id for g in states] == ["gpu-0", "gpu-1", "gpu-2"]
    assert states[2].memory_total_mb == 81559.0 and states[2].status is GpuStatus.ACTIVE
    assert src.details("gpu-2")["uuid"] not in {src.details("gpu-0")["uuid"], uuid_1}
    assert src.worker_url("gpu-2") == "http://127.0.0.1:9102"
    assert fake.inject_xid(2, 79) == 1  # the new GPU's Xid events are registered
    clock.t = 106.0
    src.sample_sync()
    [sig] = src.drain_signals()
    assert (sig.gpu_id, sig.kind) == ("gpu-2", "xid_critical")
    src.clear("gpu-2")

    gone = fake.unplug(0)  # gpu-1 and gpu-2 now sit at indices 0 and 1
    clock.t = 111.0
    states = src.sample_sync()
    assert [g.gpu_id for g in states] == ["gpu-1", "gpu-2"]  # ids follow the UUIDs
    assert src.details("gpu-1")["uuid"] == uuid_1 and src.details("gpu-1")["index"] == 0
    assert all(g.status is GpuStatus.ACTIVE for g in states)
    with pytest.raises(KeyError):
        src.details("gpu-0")
    assert src.drain_signals() == []  # leaving is not an error
    assert fake.inject_xid(0, 79) == 1  # gpu-1's events moved with it to index 0
    clock.t = 112.0
    src.sample_sync()
    assert [s.gpu_id for s in src.drain_signals()] == ["gpu-1"]
    src.clear("gpu-1")

    fake.plug(gone)  # the same GPU back (another slot): its old id
    fake.plug()  # and a new one: gpu-0 was someone else's, gpu-1 and 2 are taken
    clock.t = 117.0
    assert [g.gpu_id for g in src.sample_sync()] == ["gpu-1", "gpu-2", "gpu-0", "gpu-3"]
    assert src.details("gpu-0")["uuid"] == gone["readings"]["uuid"]


def test_rescan_keeps_a_lost_gpu_and_survives_a_failed_count() -> None:
    src, fake, clock = make(FakePynvml(device_count=2), rescan_s=1.0)
    src.sample_sync()
    fake.lose_gpu(1)  # fell off the bus: still enumerated, no handle
    clock.t = 102.0
    _, b = src.sample_sync()
    assert (b.gpu_id, b.status) == ("gpu-1", GpuStatus.ERROR)
    assert [s.kind for s in src.drain_signals()] == ["unreachable"]

    def no_count() -> int:
        raise fake.NVMLError_Unknown()

    fake.nvmlDeviceGetCount = no_count  # type: ignore[method-assign]
    clock.t = 104.0
    assert [g.gpu_id for g in src.sample_sync()] == ["gpu-0", "gpu-1"]


def test_rescan_off_never_counts_again() -> None:
    src, fake, clock = make(FakePynvml(device_count=1), rescan_s=None)
    src.sample_sync()
    fake.plug()
    clock.t = 1e6
    assert [g.gpu_id for g in src.sample_sync()] == ["gpu-0"]
    assert fake.calls["nvmlDeviceGetCount"] == 1
