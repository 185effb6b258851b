"""The leader's step-down (``shim.http.leadership``) on a fake lease and a fake clock:
a lease not renewed in time, another holder, or a refusal of the database ends the term
at once (``holds`` False for its epoch, from then on), ``on_step_down`` is told from the
thread that noticed, and the process exits (status 70) only without one or when it
fails. The watchdog thread is real (it looks every 50 ms), its clock is the fake one."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from gpu_router.shim.http.leadership import FENCED_EXIT, Leadership
from gpu_router.shim.store import JournalError
from gpu_router.shim.store.pg_lease import LeaseHolder

TTL_S = 3.0  # period 1 s, deadline 2 s (fake seconds)


class FakeLease:
    """``LeaderLease``'s calls: ``acquire`` hands out epochs 1, 2, ...; ``renew`` answers
    ``held``, or raises while ``down``."""

    def __init__(self) -> None:
        self.address = "http://me"
        self.ttl_s = TTL_S
        self.epochs = 0
        self.held = True
        self.down = False
        self.renewals = 0
        self.released = 0

    def acquire(self) -> int | None:
        self.epochs += 1
        return self.epochs

    def renew(self) -> bool:
        self.renewals += 1
        if self.down:
            raise JournalError("PostgreSQL lease: connection refused")
        return self.held

    def current(self) -> LeaseHolder:
        return LeaseHolder("other", "http://other", self.epochs, 1.0)

    def release(self) -> None:
        self.released += 1

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Told:
    """What ``on_step_down`` and ``exit_process`` were told."""

    def __init__(self, fail: bool = False) -> None:
        self.step_downs: list[tuple[int, str, float, str]] = []
        self.exits: list[int] = []
        self.fail = fail
        self.event = threading.Event()

    def step_down(self, epoch: int, why: str, complete_at: float) -> None:
        self.step_downs.append((epoch, why, complete_at, threading.current_thread().name))
        self.event.set()
        if self.fail:
            raise RuntimeError("no loop")

    def exit(self, code: int) -> None:
        self.exits.append(code)
        self.event.set()


def leading(
    lease: FakeLease, clock: Clock, told: Told, *, wired: bool = True
) -> tuple[Leadership, int]:
    lead = Leadership(
        lease,  # type: ignore[arg-type]
        logging.getLogger("test-leadership"),
        exit_process=told.exit,
        monotonic=clock,
    )
    if wired:
        lead.on_step_down = told.step_down
    started: list[int] = []

    async def start(epoch: int) -> None:
        started.append(epoch)

    asyncio.run(lead.lead(start))
    assert lead.role == "leader" and started == [lead.epoch]
    return lead, started[0]


def stop(lead: Leadership) -> None:
    asyncio.run(lead.aclose())


@pytest.mark.timeout(10)
def test_not_renewed_in_time_steps_down_from_the_watchdog_without_exiting() -> None:
    lease, clock, told = FakeLease(), Clock(), Told()
    lead, epoch = leading(lease, clock, told)
    try:
        assert lead.holds(epoch)
        lease.down = True
        clock.t += 1.9  # within the deadline (2 s): still held
        time.sleep(0.2)
        assert lead.holds(epoch) and not told.step_downs
        clock.t += 0.2  # past it: the watchdog (50 ms) steps down
        assert told.event.wait(2)
        time.sleep(0.2)  # (and only once)
        assert len(told.step_downs) == 1 and told.exits == []
        got_epoch, why, complete_at, thread = told.step_downs[0]
        assert got_epoch == epoch and why == "not renewed in time"
        assert thread == "lease-watchdog"
        assert complete_at == pytest.approx(clock.t)  # (before the lease could expire)
        assert lead.role == "standby" and lead.step_downs == 1
        assert not lead.holds(epoch)
        lease.down = False  # the renewal thread ended with the term: nothing revives it
        clock.t += 0.1
        time.sleep(0.2)
        assert not lead.holds(epoch)
    finally:
        stop(lead)


@pytest.mark.timeout(10)
def test_a_caller_past_the_deadline_is_refused_and_steps_down_itself() -> None:
    """A process that wakes from a pause: its first call asks ``holds``, which compares
    the time itself, whatever thread runs first."""
    lease, clock, told = FakeLease(), Clock(), Told()
    lead, epoch = leading(lease, clock, told)
    try:
        clock.t += 60.0  # a SIGSTOP of a minute, the lease long expired
        assert not lead.holds(epoch)
        assert told.event.wait(2) and len(told.step_downs) == 1
        _epoch, _why, complete_at, _thread = told.step_downs[0]
        # its memory is complete only until the lease could expire (others wrote after)
        assert complete_at == pytest.approx(clock.t - 60.0 + TTL_S, abs=1.0)
        assert complete_at < clock.t - 50.0
    finally:
        stop(lead)


@pytest.mark.timeout(10)
def test_deposed_by_another_holder_steps_down() -> None:
    lease, clock, told = FakeLease(), Clock(), Told()
    lead, epoch = leading(lease, clock, told)
    try:
        lease.held = False
        clock.t += 1.1  # (the renewal thread's own wait is real: 1/3 of the TTL, 1 s)
        assert told.event.wait(3)
        assert told.step_downs[0][1] == "another replica holds the lease"
        assert told.step_downs[0][3] == "lease-renewal"
        assert not lead.holds(epoch) and told.exits == []
    finally:
        stop(lead)


@pytest.mark.timeout(10)
def test_a_database_refusal_steps_down_once_and_a_stale_one_is_ignored() -> None:
    lease, clock, told = FakeLease(), Clock(), Told()
    lead, epoch = leading(lease, clock, told)
    try:
        lead.fence("database: refused", epoch=epoch + 1)  # (not this term's epoch)
        assert lead.holds(epoch) and not told.step_downs
        lead.fence("database: refused", epoch=epoch)
        lead.fence("not renewed in time", epoch=epoch)
        assert [s[1] for s in told.step_downs] == ["database: refused"]
        assert not lead.holds(epoch)
    finally:
        stop(lead)


@pytest.mark.timeout(10)
def test_after_a_step_down_it_leads_again_at_a_new_epoch_the_old_one_refused() -> None:
    lease, clock, told = FakeLease(), Clock(), Told()
    lead, first = leading(lease, clock, told)
    try:
        lead.fence("another replica holds the lease", epoch=first)
        started: list[int] = []

        async def start(epoch: int) -> None:
            started.append(epoch)

        asyncio.run(lead.lead(start))
        second = started[0]
        assert second == first + 1 and lead.role == "leader"
        assert lead.holds(second) and not lead.holds(first)
        lead.fence("database: late refusal of the old store", epoch=first)
        assert lead.holds(second) and len(told.step_downs) == 1
        time.sleep(1.2)  # the new term's renewal thread renews
        assert lease.renewals >= 1 and lead.holds(second)
    finally:
        stop(lead)


@pytest.mark.timeout(10)
def test_without_a_step_down_or_when_it_fails_the_process_exits_70() -> None:
    for wired, fail in ((False, False), (True, True)):
        lease, clock, told = FakeLease(), Clock(), Told(fail=fail)
        lead, epoch = leading(lease, clock, told, wired=wired)
        try:
            clock.t += 2.5
            assert told.event.wait(2)
            time.sleep(0.1)
            assert told.exits == [FENCED_EXIT]
            assert not lead.holds(epoch)
        finally:
            stop(lead)


@pytest.mark.timeout(10)
def test_a_clean_stop_releases_the_lease_and_ends_the_term_without_a_step_down() -> None:
    lease, clock, told = FakeLease(), Clock(), Told()
    lead, epoch = leading(lease, clock, told)
    stop(lead)
    assert lease.released == 1 and not lead.holds(epoch)
    clock.t += 10.0
    time.sleep(0.2)
    assert told.step_downs == [] and told.exits == []
