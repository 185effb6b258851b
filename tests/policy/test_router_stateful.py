"""A Hypothesis stateful test of the Router against a simple model of its invariants.

The invariants are about the accounting itself (which queue holds a request, memory and
slots per GPU, state counts), so this test reads the Router's bookkeeping
(``router._state``) and hooks its strategy (``router._binder``); callers outside the
policy use the public read API instead."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gpu_router.policy import (
    Abort,
    Dispatch,
    Finished,
    GpuState,
    QueueConfig,
    Request,
    RequestState,
    ResourceRequirements,
    Router,
    RouterConfig,
)
from gpu_router.policy.config import RetryConfig
from gpu_router.policy.outlier import OutlierConfig
from gpu_router.policy.quota import QuotaLimits

S = RequestState
USERS = ("alice", "bob", "carol")
LIMITS = QuotaLimits(
    requests_per_minute=1000, requests_per_day=100_000, concurrent_requests=5, priority_requests=2
)
WAITS = {5: 2.0, 4: 4.0, 3: 6.0, 2: 8.0, 1: 10.0}


class RouterMachine(RuleBasedStateMachine):
    binding = "late"

    @initialize(
        memories=st.lists(st.sampled_from([8_000.0, 16_000.0, 40_000.0]), min_size=2, max_size=4),
        slots=st.lists(st.integers(1, 2), min_size=4, max_size=4),
        strategy=st.sampled_from(
            [
                "hybrid-seed",
                "least-loaded",
                "earliest-completion",
                "power-of-d",
                "round-robin",
                "random",
            ]
        ),
    )
    def setup(self, memories, slots, strategy):
        self.gpus = [
            GpuState(gpu_id=f"g{i}", memory_total_mb=m, slots=slots[i], speed=0.5 + i * 0.5)
            for i, m in enumerate(memories)
        ]
        cfg = RouterConfig(
            strategy=strategy,
            binding=self.binding,
            quotas=LIMITS,
            queue=QueueConfig(max_size=40, max_wait_s=WAITS),
            retry=RetryConfig(max_retries=2, backoff_base_s=0.5, backoff_cap_s=2.0),
            outlier=OutlierConfig(
                consecutive_failures=2,
                base_ejection_s=3.0,
                max_ejection_s=10.0,
                max_ejected_share=0.5,
                slow_start_s=2.0,
            ),
            dispatch_scan_limit=64,
        )
        self.router = Router(self.gpus, cfg, np.random.default_rng(0))
        self.books = self.router._state  # the bookkeeping under test
        self.now = 0.0
        self.n = 0
        self.terminal: dict[str, S] = {}
        self.admin_down: set[str] = set()  # crashed or in maintenance, by the model
        self._hook_strategy()

    def _hook_strategy(self):
        """Check, at every placement, that nothing ahead of it in queue order fits."""
        books, binder = self.books, self.router._binder
        inner = binder.strategy.choose

        def checked(choice):
            if self.binding == "late":
                rid = choice.request.request_id
                for ahead in books.queue.ordered(choice.now):
                    if ahead == rid:
                        break
                    assert not self._fits_now(books.records[ahead]), (
                        f"{rid} dispatched while {ahead}, ahead of it, fits"
                    )
            picked = inner(choice)
            assert picked in choice.candidates
            return picked

        binder.strategy.choose = checked  # type: ignore[method-assign]

    def _fits_now(self, rec) -> bool:
        f = self.books.fleet
        for i, g in enumerate(self.gpus):
            if g.gpu_id in self.admin_down or f.down[i]:
                continue
            if (
                f.running[i] < f.slots[i]
                and f.reserved_mb[i] + rec.memory_mb <= f.memory_total[i]
                and g.memory_total_mb >= rec.memory_mb
            ):
                return True
        return False

    def _apply(self, actions):
        for a in actions:
            if isinstance(a, Dispatch):
                assert a.gpu_id not in self.admin_down, f"placed on {a.gpu_id} while it is out"
                assert self.router.record(a.request_id).state is S.PROCESSING
            elif isinstance(a, Finished):
                assert a.request_id not in self.terminal, "finished twice"
                self.terminal[a.request_id] = S(a.state)
            elif isinstance(a, Abort):
                assert self.router.state_of(a.request_id) is not None

    def _ids(self, state):
        return sorted(rid for rid, r in self.books.records.items() if r.state is state)

    @rule(dt=st.floats(0, 1.5))
    def advance(self, dt):
        self.now += dt
        self._apply(self.router.tick(self.now))

    @rule(
        user=st.sampled_from(USERS),
        prio=st.integers(1, 5),
        mem=st.sampled_from([1_000.0, 7_000.0, 12_000.0, 30_000.0, 50_000.0]),
        timeout=st.sampled_from([None, None, 3.0]),
    )
    def submit(self, user, prio, mem, timeout):
        self.n += 1
        rid = f"r{self.n}"
        request = Request(
            rid,
            user,
            "m",
            prio,
            "inference",
            ResourceRequirements(memory_mb=mem, expected_duration_ms=1000),
            timeout_s=timeout,
            submitted_at=self.now,
        )
        decision, actions = self.router.submit(request, self.now)
        self._apply(actions)
        if self.router.state_of(rid) is None:
            assert type(decision).__name__ == "Reject"

    @precondition(lambda self: self._ids(S.PROCESSING))
    @rule(data=st.data())
    def complete(self, data):
        rid = data.draw(st.sampled_from(self._ids(S.PROCESSING)))
        self.router.start(rid, self.now)
        self._apply(self.router.complete(rid, self.now))

    @precondition(lambda self: self._ids(S.PROCESSING))
    @rule(data=st.data())
    def fail(self, data):
        rid = data.draw(st.sampled_from(self._ids(S.PROCESSING)))
        self._apply(self.router.fail(rid, self.now, "worker error"))

    @precondition(lambda self: self.n > 0)
    @rule(data=st.data(), twice=st.booleans())
    def cancel(self, data, twice):
        rid = f"r{data.draw(st.integers(1, self.n))}"
        before = dict(self.terminal)
        self._apply(self.router.cancel(rid, self.now))
        after_once = self.router.state_of(rid)
        if twice:
            assert self.router.cancel(rid, self.now) == []  # cancelling twice = once
            assert self.router.state_of(rid) == after_once
        if rid in before:
            assert self.terminal[rid] == before[rid]

    @rule(i=st.integers(0, 3), how=st.sampled_from(["crash", "maintenance"]))
    def take_out(self, i, how):
        if i >= len(self.gpus):
            return
        gid = self.gpus[i].gpu_id
        self.admin_down.add(gid)
        call = self.router.gpu_down if how == "crash" else self.router.maintenance
        self._apply(call(gid, self.now))

    @rule(i=st.integers(0, 3), how=st.sampled_from(["up", "restart"]))
    def bring_back(self, i, how):
        if i >= len(self.gpus):
            return
        gid = self.gpus[i].gpu_id
        if how == "restart":
            self.admin_down.discard(gid)
            self._apply(self.router.restart(gid, self.now))
        elif gid in self.admin_down and self.router.is_out(gid) <= {"crashed", "ejected"}:
            self.admin_down.discard(gid)
            self._apply(self.router.gpu_up(gid, self.now))

    # -- invariants --------------------------------------------------------------

    @invariant()
    def each_request_in_exactly_one_state(self):
        r = self.books
        gpu_queued = {rid for gq in r.gpu_queues for rid in gq._entries}
        held = {rid for rid, rec in r.records.items() if rec.not_before is not None}
        running = {rid for ids in r.on_gpu for rid in ids}
        places = [set(r.queue._entries), gpu_queued, held, running]
        for rid, rec in r.records.items():
            where = [k for k, s in enumerate(places) if rid in s]
            if rec.state is S.QUEUED:
                assert len(where) == 1 and where[0] in (0, 1, 2), (rid, where)
            elif rec.state is S.PROCESSING:
                assert where == [3], (rid, where)
            else:
                assert where == [], (rid, rec.state, where)
        assert sum(r.counts.values()) == len(r.records)
        for state in S:
            assert r.counts[state] == sum(1 for x in r.records.values() if x.state is state)

    @invariant()
    def terminal_states_are_final(self):
        for rid, state in self.terminal.items():
            assert self.router.state_of(rid) is state

    @invariant()
    def memory_never_above_total_and_accounting_exact(self):
        f = self.books.fleet
        for i in range(f.size):
            held = sum(self.books.records[rid].memory_mb for rid in self.books.on_gpu[i])
            assert abs(f.reserved_mb[i] - held) < 1e-6
            assert f.reserved_mb[i] <= f.memory_total[i]
            assert f.running[i] == len(self.books.on_gpu[i]) <= f.slots[i]
            assert abs(f.free_mb[i] - (f.memory_total[i] - f.reserved_mb[i])) < 1e-6
            assert f.open[i] == (f.available()[i] and f.running[i] < f.slots[i])
        assert f.open_count == int(f.open.sum())

    @invariant()
    def python_mirrors_equal_the_arrays(self):
        f = self.books.fleet
        assert f.open_list == f.open.tolist()
        assert f.free_list == f.free_mb.tolist()
        assert f.work_list == f.work_left_s.tolist()
        assert f.running_list == f.running.tolist()
        assert f.slots_list == f.slots.tolist()
        assert f.speed_list == f.speed.tolist()
        assert f.up_list == f.available().tolist()
        assert f.slots_available == int(f.slots[f.available()].sum())

    @invariant()
    def read_api_agrees_with_the_books(self):
        r, b = self.router, self.books
        views = r.gpus()
        assert [v.gpu_id for v in views] == list(r.gpu_ids) == [g.gpu_id for g in self.gpus]
        for i, v in enumerate(views):
            assert v == r.gpu(v.gpu_id) and r.has_gpu(v.gpu_id)
            assert v.running == len(v.request_ids) and set(v.request_ids) == b.on_gpu[i]
            assert v.out_reasons == r.is_out(v.gpu_id) == b.out_reasons[i]
            if "maintenance" in v.out_reasons:
                assert v.status == "maintenance"
            else:
                assert v.status == ("error" if v.out_reasons else v.state.status.value)
        summary = r.fleet_summary()
        assert summary.size == len(views) and summary.queued == r.queue_length
        assert summary.running == sum(v.running for v in views)
        assert summary.in_service == sum(1 for v in views if not v.out_reasons)
        in_service = [v for v in views if not v.out_reasons and v.sampled_ok]
        assert summary.slots_in_service == sum(v.slots for v in in_service)
        assert not r.has_gpu("nope")

    @invariant()
    def user_usage_within_quota(self):
        for user in USERS:
            live = [
                x
                for x in self.books.records.values()
                if x.request.user_id == user and not x.state.terminal
            ]
            assert len(live) <= LIMITS.concurrent_requests
            assert sum(1 for x in live if x.request.priority >= 4) <= LIMITS.priority_requests


class EarlyBindingMachine(RouterMachine):
    binding = "early"


RouterMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
EarlyBindingMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
TestRouterStateful = RouterMachine.TestCase
TestEarlyBindingStateful = EarlyBindingMachine.TestCase
