"""Several routers on one PostgreSQL store under load, their leader SIGKILLed (or
SIGSTOPped) again and again, or the database itself stopped; prints JSON.

    .venv/bin/python benchmarks/ha.py [--kills 20] [--rate 200] [--replicas 3]
        [--workers 3] [--ttl 2] [--interval 4] [--signal KILL|STOP]
        [--balance round-robin|leader] [--read-rate 50] [--db-outage SECONDS] [--out FILE]

Starts a throwaway PostgreSQL (``tests/shim/store/pg_server.py``), ``--workers`` CPU
reference workers (each with a job log), and ``--replicas`` routers (``gpu-router serve
--store ...`` with ``journal.lease_ttl_s`` = ``--ttl``, ``journal.standby_ready``) on
loopback, each kept running by a supervisor loop here (a replica that exits is started
again, as a standby; a leader that loses its lease steps down in process, so none
should). Load threads send ``--rate`` submissions per second in all:
``round-robin`` (the default) spreads them over every replica's address in turn, as a
plain load balancer would (no health check, no retry: a standby forwards to the leader);
``leader`` sends them to the leader they know (on a 503 or a refused connection they look
for it again through ``/health``). A reader thread sends ``--read-rate`` status reads per
second of acknowledged ids, round-robin too. Every ``--interval`` s the leader is sent
``--signal``: KILL (SIGKILL), or STOP (SIGSTOP, then SIGCONT once another replica leads:
it must find itself fenced and step down). With ``--db-outage SECONDS`` there is no signal:
PostgreSQL is stopped (``pg_ctl stop -m fast``) after ``--interval`` s for that long and
started again on the same data directory, and the load goes on ``--interval`` s more.

Reported: acknowledged, completed, lost (acknowledged, never terminal: must be 0),
completed twice (counted in the workers' job logs: must be 0), the answers of each
replica (writes and reads, by status), the takeover time of each kill (from the signal to
the first 200 of a submission sent after it) as p50/p99/max and the submissions answered
503 or refused meanwhile; for an outage, the writes and reads answered while the database
was down (by status, with Retry-After, where reads came from and how stale; the replica
that led when it stopped: ``leader_at_stop``), and the recovery time (from the
database's start to the first 200 of a submission sent after it). Loopback only,
bounded: ``--kills`` at most 50, ``--rate`` at most 1000, ``--db-outage`` at most 60 s.
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
    """Submissions at ``rate`` per second: round-robin over the replicas, or to the
    leader this thread knows."""

    def __init__(
        self, replicas: Replicas, rate: float, tag: str, job_ms: int, balance: str, first: int
    ) -> None:
        super().__init__(daemon=True)
        self.replicas, self.rate, self.tag, self.job_ms = replicas, rate, tag, job_ms
        self.balance, self.first = balance, first
        self.acked: list[str] = []
        #: (t answered, status, replica, t sent, Retry-After given)
        self.answers: list[tuple[float, int, int, float, bool]] = []
        self.errors: Counter[str] = Counter()  # "status error-code" of the refused
        self.stop = threading.Event()

    def run(self) -> None:
        users, n, t0, at = list(KEYS), 0, time.monotonic(), self.first
        count = len(self.replicas.urls)
        with httpx.Client(timeout=2.0) as c:
            while not self.stop.is_set():
                delay = t0 + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                user, rid = users[n % 3], f"{self.tag}-{n}"
                if self.balance == "round-robin":
                    at = (self.first + n) % count
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
                retry = False
                try:
                    r = c.post(f"{url}/api/v1/route", json=body, headers=hdr(KEYS[user]))
                    code, retry = r.status_code, "retry-after" in r.headers
                    if code != 200:
                        self.errors[f"{code} {_error_code(r)}"] += 1
                except httpx.HTTPError:
                    code = 0
                self.answers.append((time.monotonic(), code, at, sent, retry))
                if code == 200:
                    self.acked.append(rid)
                elif self.balance == "leader":  # (a 503, a refused connection): find it
                    found = self.replicas.leader()
                    at = found if found is not None else at


class Reads(threading.Thread):
    """Status reads at ``rate`` per second of ids the loads acknowledged, round-robin
    over the replicas."""

    def __init__(self, replicas: Replicas, rate: float, loads: list[Load]) -> None:
        super().__init__(daemon=True)
        self.replicas, self.rate, self.loads = replicas, rate, loads
        #: (t answered, status, replica, where from, how stale (s) or None)
        self.answers: list[tuple[float, int, int, str, float | None]] = []
        self.errors: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        n, t0, count = 0, time.monotonic(), len(self.replicas.urls)
        users = list(KEYS)
        with httpx.Client(timeout=2.0) as c:
            while not self.stop.is_set():
                delay = t0 + n / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                load = self.loads[n % len(self.loads)]
                at = n % count
                n += 1
                if len(load.acked) < 2:
                    continue
                rid = load.acked[-2 - (n % min(len(load.acked) - 1, 50))]
                user = users[int(rid.rsplit("-", 1)[1]) % 3]
                url = f"{self.replicas.urls[at]}/api/v1/requests/{rid}"
                try:
                    r = c.get(url, headers=hdr(KEYS[user]))
                    code, src = r.status_code, r.headers.get("x-gpu-router-read-from", "-")
                    stale = r.headers.get("x-gpu-router-stale-s")
                    if code != 200:
                        self.errors[f"{code} {_error_code(r)}"] += 1
                except httpx.HTTPError:
                    code, src, stale = 0, "-", None
                self.answers.append(
                    (time.monotonic(), code, at, src, None if stale is None else float(stale))
                )


def _error_code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "-"


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


def by_status(codes: list[tuple[int, int]]) -> dict[str, dict[str, int]]:
    """(replica, status) pairs as {replica: {status: count}}."""
    out: dict[str, Counter[str]] = {}
    for at, code in codes:
        out.setdefault(str(at), Counter())[str(code)] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def signals(args: argparse.Namespace, replicas: Replicas) -> list[tuple[float, int]]:
    """``--kills`` signals to the leader, ``--interval`` s apart; (when, which replica)."""
    kills: list[tuple[float, int]] = []
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
            proc.p.send_signal(signal.SIGCONT)  # it must find itself fenced and step down
            replicas.paused.discard(leader)
    return kills


def outage(args: argparse.Namespace, pg: PgServer) -> tuple[float, float, float, float]:
    """The database stopped for ``--db-outage`` s; when (monotonic s) the stop command
    was sent and returned (the server down), and when the start command was sent and
    returned (the server accepting connections)."""
    time.sleep(args.interval)
    stop_sent = time.monotonic()
    pg.stop("fast")
    stopped = time.monotonic()
    time.sleep(max(0.0, stop_sent + args.db_outage - time.monotonic()))
    start_sent = time.monotonic()
    pg.start()
    return stop_sent, stopped, start_sent, time.monotonic()


def outage_figures(
    writes: list[tuple[float, int, int, float, bool]],
    reads: list[tuple[float, int, int, str, float | None]],
    down: tuple[float, float, float, float],
) -> dict[str, Any]:
    """What was answered while the server was down for sure (from the stop command's
    return to the start command's sending), and the recovery from the start's return."""
    stop_sent, stopped, start_sent, started = down
    w = [a for a in writes if stopped <= a[3] and a[0] < start_sent]
    r = [a for a in reads if stopped <= a[0] < start_sent]
    stale = [a[4] for a in r if a[4] is not None]
    back = [ta - started for ta, code, _at, ts, _ra in writes if ts >= started and code == 200]
    return {
        "down_s": round(start_sent - stopped, 3),
        "stop_to_start_s": round(started - stop_sent, 3),
        "writes_during": dict(Counter(str(a[1]) for a in w)),
        "writes_503_with_retry_after": sum(1 for a in w if a[1] == 503 and a[4]),
        "writes_200_during": sum(1 for a in w if a[1] == 200),
        "writes_by_replica": by_status([(a[2], a[1]) for a in w]),
        "reads_during": dict(Counter(str(a[1]) for a in r)),
        "reads_by_replica": by_status([(a[2], a[1]) for a in r]),
        "reads_from": dict(Counter(a[3] for a in r if a[1] == 200)),
        "read_stale_max_s": round(max(stale), 3) if stale else None,
        "recovery_s": round(min(back), 3) if back else None,
    }


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
        journal={"lease_ttl_s": args.ttl, "standby_ready": True},
        user_quota_manager={"requests_per_day": 10_000_000, "default_request_limit": 100_000},
    )
    replicas = Replicas(tmp, args.replicas, cfg, db)
    loads: list[Load] = []
    reader: Reads | None = None
    runners: list[Load | Reads] = []
    takeovers: list[float] = []
    kills: list[tuple[float, int]] = []
    down: tuple[float, float, float, float] | None = None
    leader_at_stop: int | None = None
    try:
        deadline = time.monotonic() + 60
        while replicas.leader() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        while (  # every standby ready (its warm copy loaded)
            sum(1 for u in replicas.urls if _ready(u)) < args.replicas
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        threads = 4
        loads = [
            Load(replicas, args.rate / threads, f"h{i}", args.job_ms, args.balance, i)
            for i in range(threads)
        ]
        reader = Reads(replicas, args.read_rate, loads) if args.read_rate > 0 else None
        runners += [*loads, *([reader] if reader else [])]
        for th in runners:
            th.start()
        if args.db_outage > 0:
            leader_at_stop = replicas.leader()
            down = outage(args, pg)
        else:
            kills = signals(args, replicas)
        time.sleep(args.interval)
        for th in runners:
            th.stop.set()
        for th in runners:
            th.join(10)
        answers = sorted(a for load in loads for a in load.answers)
        for t, _old in kills:
            # (sent after the signal: a standby may relay a 200 of the old leader sent
            # before it, which says nothing of the takeover)
            after = [ta for ta, code, at, ts, _ra in answers if ts > t and code == 200]
            if after:
                takeovers.append(after[0] - t)
        acked = [rid for load in loads for rid in load.acked]
        done = settle(replicas, acked)
    finally:
        for th in runners:
            th.stop.set()
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
        for ta, code, _at, _ts, _ra in answers
        if t <= ta <= t + (max(takeovers) if takeovers else 0.0) and code != 200
    ]
    reads = reader.answers if reader is not None else []
    report: dict[str, Any] = {
        "signal": "none (database outage)" if down else args.signal,
        "balance": args.balance,
        "kills": len(kills),
        "rate": args.rate,
        "read_rate": args.read_rate,
        "replicas": args.replicas,
        "workers": args.workers,
        "ttl_s": args.ttl,
        "acknowledged": len(acked),
        "completed": sum(1 for s in done.values() if s == "completed"),
        "terminal": dict(Counter(done.values())),
        "lost": len([r for r in acked if r not in done]),
        "completed_twice": sum(1 for n in ends.values() if n > 1),
        "writes_by_replica": by_status([(a[2], a[1]) for a in answers]),
        "write_errors": dict(sum((load.errors for load in loads), Counter())),
        "reads_by_replica": by_status([(a[2], a[1]) for a in reads]),
        "read_errors": dict(reader.errors) if reader is not None else {},
        "replica_restarts": replicas.restarts,
    }
    if down is not None:
        report["db_outage"] = outage_figures(answers, reads, down)
        report["db_outage"]["leader_at_stop"] = leader_at_stop
    else:
        report["takeover_s"] = {
            "p50": percentile(takeovers, 0.5),
            "p99": percentile(takeovers, 0.99),
            "max": round(max(takeovers), 3) if takeovers else None,
            "all": [round(t, 3) for t in takeovers],
        }
        report["refused_during_takeovers"] = dict(Counter(str(c) for c in in_takeover))
    return report


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def settle(replicas: Replicas, acked: list[str]) -> dict[str, str]:
    """The terminal state of every acknowledged request (read from the leader), waiting
    at most 120 s."""
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
    return done


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
    p.add_argument("--balance", choices=("round-robin", "leader"), default="round-robin")
    p.add_argument("--read-rate", type=float, default=50.0, help="status reads per second")
    p.add_argument("--db-outage", type=float, default=0.0, help="stop PostgreSQL this long")
    p.add_argument("--out")
    args = p.parse_args(argv)
    if not 1 <= args.kills <= 50 or not 1 <= args.rate <= 1000 or not 2 <= args.replicas <= 5:
        p.error("--kills in [1, 50], --rate in [1, 1000], --replicas in [2, 5]")
    if not 0 <= args.db_outage <= 60 or not 0 <= args.read_rate <= 1000:
        p.error("--db-outage in [0, 60] s, --read-rate in [0, 1000]")
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
