"""The central queue: priority, aging, fair share, FIFO, the bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_router.policy import CentralQueue, InvalidValue, QueueConfig

WAITS = {5: 10.0, 4: 20.0, 3: 30.0, 2: 40.0, 1: 50.0}


def q(**kw) -> CentralQueue:
    return CentralQueue(QueueConfig(max_wait_s=WAITS, **kw))


def test_priority_then_fifo():
    queue = q(fair_share=False)
    for i, p in enumerate([1, 3, 5, 3, 1, 5]):
        queue.push(f"r{i}", "u", p, float(i))
    assert list(queue.ordered(6.0)) == ["r2", "r5", "r1", "r3", "r0", "r4"]


def test_fair_share_interleaves_users_inside_a_priority():
    queue = q()
    for i in range(4):
        queue.push(f"flood{i}", "flooder", 3, float(i))
    queue.push("polite0", "polite", 3, 10.0)
    queue.push("polite1", "polite", 3, 11.0)
    assert list(queue.ordered(12.0)) == [
        "flood0",
        "polite0",
        "flood1",
        "polite1",
        "flood2",
        "flood3",
    ]


def test_fair_share_tags_follow_virtual_time_after_dispatch():
    queue = q()
    for i in range(3):
        queue.push(f"a{i}", "a", 3, float(i))
    queue.remove("a0", dispatched=True)
    queue.remove("a1", dispatched=True)
    queue.push("b0", "b", 3, 5.0)  # joins at the band's virtual time, not behind a's backlog
    assert list(queue.ordered(6.0)) == ["a2", "b0"]


def test_aging_puts_overdue_requests_first_by_deadline():
    queue = q()
    queue.push("low", "u", 1, 0.0)  # deadline 50
    queue.push("mid", "u", 3, 15.0)  # deadline 45
    queue.push("high", "u", 5, 59.0)  # deadline 69
    assert list(queue.ordered(30.0)) == ["high", "mid", "low"]
    assert list(queue.ordered(46.0)) == ["mid", "high", "low"]
    assert list(queue.ordered(51.0)) == ["mid", "low", "high"]
    assert queue.is_overdue("low", 50.0) and not queue.is_overdue("low", 49.9)


def test_head_requeue_goes_first_in_its_priority():
    queue = q()
    queue.push("a", "u1", 3, 1.0)
    queue.push("b", "u2", 3, 2.0)
    queue.push("retry", "u3", 3, 0.5, head=True)
    queue.push("p4", "u3", 4, 3.0)
    assert list(queue.ordered(4.0)) == ["p4", "retry", "a", "b"]


def test_bound_refuses_low_priorities_first():
    queue = CentralQueue(QueueConfig(max_size=10))
    for i in range(6):
        queue.push(f"r{i}", "u", 3, float(i))
    assert not queue.admits(1)  # 6 >= 10 * 0.6
    assert queue.admits(2) and queue.admits(5)
    for i in range(6, 9):
        queue.push(f"r{i}", "u", 5, float(i))
    assert not queue.admits(4) and queue.admits(5)
    queue.push("r9", "u", 5, 9.0)
    assert not queue.admits(5)


def test_remove_cancel_and_duplicates():
    queue = q()
    queue.push("a", "u", 3, 0.0)
    with pytest.raises(InvalidValue):
        queue.push("a", "u", 3, 0.0)
    assert queue.remove("a") and not queue.remove("a")
    assert len(queue) == 0 and "a" not in queue


def test_config_validation_names_the_key():
    with pytest.raises(InvalidValue, match=r"queue\.max_size"):
        QueueConfig(max_size=-1)
    assert QueueConfig(max_size=0).loss and not QueueConfig().loss
    with pytest.raises(InvalidValue, match="admission_share"):
        QueueConfig(admission_share={1: 2.0, 2: 1, 3: 1, 4: 1, 5: 1})
    with pytest.raises(InvalidValue, match="max_wait_s"):
        QueueConfig(max_wait_s={5: 1.0})


ops = st.lists(
    st.tuples(st.sampled_from("abc"), st.integers(1, 5), st.floats(0, 5)), min_size=1, max_size=40
)


@settings(max_examples=200, deadline=None)
@given(ops, st.floats(0, 300))
def test_order_is_a_permutation_respecting_priority_and_per_user_fifo(pushes, now_extra):
    queue = q()
    t = 0.0
    info = {}
    for n, (user, prio, dt) in enumerate(pushes):
        t += dt
        queue.push(f"r{n}", user, prio, t)
        info[f"r{n}"] = (user, prio, t)
    now = t + now_extra
    order = list(queue.ordered(now))
    assert sorted(order) == sorted(info)
    overdue = [r for r in order if now - info[r][2] >= WAITS[info[r][1]]]
    assert order[: len(overdue)] == overdue  # aged requests come first
    rest = order[len(overdue) :]
    prios = [info[r][1] for r in rest]
    assert prios == sorted(prios, reverse=True)  # then priority order
    for user in "abc":  # each user's requests of one priority stay FIFO
        for p in range(1, 6):
            mine = [info[r][2] for r in rest if info[r][:2] == (user, p)]
            assert mine == sorted(mine)
