"""Exact values of small seeded runs with a fixed stub router, so they pin the engine
(arrivals, processor sharing, faults, records) independently of policy changes."""

from gpu_router.policy.decisions import Dispatch, Enqueue, Finished
from gpu_router.sim import metrics as m
from gpu_router.sim import parse_scenario, run_scenario


class FirstFitStub:
    """Central FIFO; places on the lowest-numbered GPU with a free slot."""

    def __init__(self, gpus, _cfg, _rng):
        self.ids = [g.gpu_id for g in gpus]
        self.free = {g.gpu_id: g.slots for g in gpus}
        self.queue, self.on, self.queue_length = [], {}, 0

    def _fill(self):
        out = []
        while self.queue:
            gid = next((g for g in self.ids if self.free[g] > 0), None)
            if gid is None:
                break
            rid = self.queue.pop(0)
            self.free[gid] -= 1
            self.on[rid] = gid
            out.append(Dispatch(rid, gid))
        self.queue_length = len(self.queue)
        return out

    def submit(self, request, now):
        self.queue.append(request.request_id)
        return Enqueue(len(self.queue)), self._fill()

    def complete(self, rid, now):
        self.free[self.on.pop(rid)] += 1
        return [Finished(rid, "completed"), *self._fill()]

    def start(self, rid, now):
        return []

    def next_wakeup(self):
        return None

    def tick(self, now):
        return []

    def observe(self, state, now):
        return []


def run(data, seed):
    return run_scenario(parse_scenario(data), "round-robin", seed, router_factory=FirstFitStub)


def test_frozen_shared_mode_with_throttle():
    res = run(
        {
            "horizon_s": 60,
            "fleet": {"count": 3, "mode": "shared", "slots": 3},
            "workload": {"load": 0.9, "service": {"distribution": "lognormal", "cv": 2.0}},
            "monitor": {"enabled": False},
            "faults": [{"kind": "throttle", "gpus": [0], "at_s": 10, "duration_s": 20}],
        },
        seed=11,
    )
    req = res.requests
    assert len(req) == 180
    assert req[m.FINISH_S].sum() == 5719.506377123117
    assert req[m.SERVICE_S].max() == 23.877259318474678
    assert res.gpus[m.BUSY_S].tolist() == [
        59.882392828434526,
        45.53278823621002,
        23.316938373609943,
    ]


def test_frozen_exclusive_mmc():
    res = run(
        {
            "horizon_s": 100,
            "fleet": {"count": 2},
            "workload": {"load": 0.8},
            "monitor": {"enabled": False},
            "service_model": {"floor_ms": 0},
        },
        seed=5,
    )
    row = res.row()
    assert row[m.N_COMPLETED] == 156
    assert row[m.WAIT_MEAN_S] == 0.6411365416634519
    assert row[m.UTILIZATION] == 0.766965762294905
