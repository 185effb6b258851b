"""Several routers on one PostgreSQL store under load, their leader SIGKILLed (or
SIGSTOPped) again and again; prints JSON.

    .venv/bin/python benchmarks/ha.py [--kills 20] [--rate 200] [--replicas 3]
        [--workers 3] [--ttl 2] [--interval 4] [--signal KILL|STOP] [--out FILE]

Starts a throwaway PostgreSQL (``tests/shim/store/pg_server.py``), ``--workers`` CPU
reference workers (each with a job log), and ``--replicas`` routers (``gpu-router serve
--store ...`` with ``journal.lease_ttl_s`` = ``--ttl``) on loopback, each kept running by
a supervisor loop here (a replica that exits is started again, as a standby). Load
threads send ``--rate`` submissions per second in all to the leader they know (on a 503
or a refused connection they look for the leader again through the replicas'
``/health``). Every ``--interval`` s the leader is sent ``--signal``: KILL (SIGKILL), or
STOP (SIGSTOP, then SIGCONT once another replica leads: it must find itself fenced and
exit). Reported: acknowledged, completed, lost (acknowledged, never terminal: must be 0),
completed twice (counted in the workers' job logs: must be 0), the takeover time of
each kill (from the signal to the first 200 answered by another replica) as p50/p99/max,
and the submissions answered 503 or refused meanwhile. Loopback only, bounded: ``--kills``
at most 50, ``--rate`` at most 1000.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.procs import (  # noqa: E402
    ADMIN,
    KEYS,
    Proc,
    free_port,
    hdr,
    router_config,
    start_worker,
)
from tests.e2e.test_exactly_once_e2e import JobLogs  # noqa: E402
from tests.shim.store.pg_server import PgServer, missing_reason  # noqa: E402

TERMINAL = {"completed", "failed", "cancelled"}


class Replicas:
    """The routers, each restarted when it exits (a supervisor)."""

    def __init__(self, tmp: Path, n: int, cfg: dict[str, Any], db: str) -> None:
        self.tmp, self.cfg, self.db = tmp, cfg, db
        self.ports = [free_port() for _ in range(n)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.procs: list[Proc | None] = [None] * n
        self.paused: set[int] = set()
        self.restarts = 0
        self.stop = threading.Event()
        for i in range(n):
            self._start(i)
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _start(self, i: int) -> None:
        path = self.tmp / f"router{i}.yaml"
        cfg = {**self.cfg, "api": {"public_url": self.urls[i]}}
        path.write_text(yaml.safe_dump(cfg))
        args = ["serve", "--config", str(path), "--host", "127.0.0.1"]
        args += ["--port", str(self.ports[i]), "--store", self.db]
        self.procs[i] = Proc(args, self.tmp / f"router{i}.log")

    def _supervise(self) -> None:
        while not self.stop.wait(0.1):
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.p.poll() is not None:
                    proc.kill()  # (closes its log)
                    self.restarts += 1
                    self._start(i)

    def leader(self) -> int | None:
        for i, url in enumerate(self.urls):
            if i in self.paused:
                continue
            try:
                data = httpx.get(f"{url}/health", timeout=0.5).json()["data"]
            except (httpx.HTTPError, ValueError, KeyError):
                continue
            if data.get("role") == "leader" and data.get("ready"):
                return i
        return None

    def close(self) -> None:
        self.stop.set()
        self._thread.join(2)
        for proc in self.procs:
            if proc is not None:
                proc.p.send_signal(signal.SIGCONT)
                proc.stop()


class Load(threading.Thread):
    """Submissions at ``rate`` per second to the leader this thread knows."""

    def __init__(self, replicas: Replicas, rate: float, tag: str, job_ms: int) -> None:
        super().__init__(daemon=True)
        self.replicas, self.rate, self.tag, self.job_ms = replicas, rate, tag, job_ms
        self.acked: list[str] = []
        #: (t answered, status, replica, t sent)
        self.answers: list[tuple[float, int, int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        users, n, t0, at = list(KEYS), 0, time.monotonic(), 0
        with httpx.Client(timeout=2.0) as c:
            while not self.stop.is_set():
                delay = t0 + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                user, rid = users[n % 3], f"{self.tag}-{n}"
                n += 1
                body = {
                    "request_id": rid,
                    "user_id": user,
                    "model_id": "mm",
                    "priority": 3,
                    "type": "inference",
                    "payload": {},
                    "resource_requirements": {"memory": 256, "expected_duration": self.job_ms},
                }
                url = self.replicas.urls[at]
                sent = time.monotonic()
                try:
                    status = c.post(f"{url}/api/v1/route", json=body, headers=hdr(KEYS[user]))
                    code = status.status_code
                except httpx.HTTPError:
                    code = 0
                self.answers.append((time.monotonic(), code, at, sent))
                if code == 200:
                    self.acked.append(rid)
                else:  # (a 503 from a standby, a refused connection): find the leader
                    found = self.replicas.leader()
                    at = found if found is not None else at


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


def campaign(args: argparse.Namespace, tmp: Path, pg: PgServer) -> dict[str, Any]:
    db = pg.create_database("ha")
    wports = [free_port() for _ in range(args.workers)]
    logs = [tmp / f"jobs{i}.jsonl" for i in range(args.workers)]
    workers = [
        start_worker(i, p, tmp, extra=["--job-log", str(logs[i])]) for i, p in enumerate(wports)
    ]
    cfg = router_config(
        tmp,
        wports,
        journal={"lease_ttl_s": args.ttl},
        user_quota_manager={"requests_per_day": 10_000_000, "default_request_limit": 100_000},
    )
    replicas = Replicas(tmp, args.replicas, cfg, db)
    loads: list[Load] = []
    takeovers: list[float] = []
    kills: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 60
        while replicas.leader() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        threads = 4
        loads = [Load(replicas, args.rate / threads, f"h{i}", args.job_ms) for i in range(threads)]
        for load in loads:
            load.start()
        for _ in range(args.kills):
            time.sleep(args.interval)
            leader = replicas.leader()
            if leader is None:
                continue
            proc = replicas.procs[leader]
            assert proc is not None
            t = time.monotonic()
            if args.signal == "STOP":
                replicas.paused.add(leader)
                proc.p.send_signal(signal.SIGSTOP)
            else:
                proc.p.send_signal(signal.SIGKILL)
            kills.append((t, leader))
            while time.monotonic() - t < 30:
                new = replicas.leader()
                if new is not None and new != leader:
                    break
                time.sleep(0.05)
            if args.signal == "STOP":
                proc.p.send_signal(signal.SIGCONT)  # it must find itself fenced and exit
                replicas.paused.discard(leader)
        time.sleep(args.interval)
        for load in loads:
            load.stop.set()
        for load in loads:
            load.join(10)
        answers = sorted(a for load in loads for a in load.answers)
        for t, old in kills:
            # (sent after the signal: a standby may relay a 200 of the old leader sent
            # before it, which says nothing of the takeover)
            after = [ta for ta, code, at, ts in answers if ts > t and code == 200 and at != old]
            if after:
                takeovers.append(after[0] - t)
        acked = [rid for load in loads for rid in load.acked]
        done: dict[str, str] = {}
        final = replicas.leader()
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=10) as c:
            while len(done) < len(acked) and time.monotonic() < deadline:
                final = replicas.leader() if final is None else final
                for rid in acked:
                    if rid in done or final is None:
                        continue
                    try:
                        url = f"{replicas.urls[final]}/api/v1/requests/{rid}"
                        r = c.get(url, headers=hdr(ADMIN))
                        state = r.json()["data"]["status"] if r.status_code == 200 else None
                    except (httpx.HTTPError, ValueError, KeyError, TypeError):
                        final, state = None, None
                    if state in TERMINAL:
                        done[rid] = state
                time.sleep(0.2)
        time.sleep(0.5)
    finally:
        for load in loads:
            load.stop.set()
        replicas.close()
        for w in workers:
            w.stop()
    events = JobLogs(logs)
    events.poll()
    ends = Counter(
        e["request_id"]
        for e in events.events
        if e["event"] == "end" and e.get("state") == "completed"
    )
    in_takeover = [
        code
        for t, _old in kills
        for ta, code, _at, _ts in answers
        if t <= ta <= t + (max(takeovers) if takeovers else 0.0) and code != 200
    ]
    return {
        "signal": args.signal,
        "kills": len(kills),
        "rate": args.rate,
        "replicas": args.replicas,
        "workers": args.workers,
        "ttl_s": args.ttl,
        "acknowledged": len(acked),
        "completed": sum(1 for s in done.values() if s == "completed"),
        "terminal": dict(Counter(done.values())),
        "lost": len([r for r in acked if r not in done]),
        "completed_twice": sum(1 for n in ends.values() if n > 1),
        "takeover_s": {
            "p50": percentile(takeovers, 0.5),
            "p99": percentile(takeovers, 0.99),
            "max": round(max(takeovers), 3) if takeovers else None,
            "all": [round(t, 3) for t in takeovers],
        },
        "refused_during_takeovers": dict(Counter(str(c) for c in in_takeover)),
        "replica_restarts": replicas.restarts,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--ttl", type=float, default=2.0)
    p.add_argument("--interval", type=float, default=4.0, help="seconds between kills")
    p.add_argument("--job-ms", type=int, default=60)
    p.add_argument("--signal", choices=("KILL", "STOP"), default="KILL")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if not 1 <= args.kills <= 50 or not 1 <= args.rate <= 1000 or not 2 <= args.replicas <= 5:
        p.error("--kills in [1, 50], --rate in [1, 1000], --replicas in [2, 5]")
    why = missing_reason()
    if why is not None:
        raise SystemExit(f"ha.py: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="gpu-router-ha-"))
    pg = PgServer()
    try:
        pg.start()
        report = campaign(args, tmp, pg)
    finally:
        pg.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
