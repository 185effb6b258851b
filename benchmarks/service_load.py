"""Open-loop load on the routing service over loopback, against a bare Starlette endpoint.

    .venv/bin/python benchmarks/service_load.py [--rates 100,500,1000,2000] [--duration 5]
        [--repeat 1] [--store URL ...]
        [--virtual-gpus 64] [--job-ms 20] [--out FILE]

Starts ``gpu-router serve --virtual-gpus N`` and a bare Starlette JSON endpoint (same
uvicorn settings, one process each, so one core each) as subprocesses on 127.0.0.1,
then for each rate sends POST /api/v1/route at a constant rate for ``--duration``
seconds (open loop: request i is due at t0 + i/rate whatever the earlier ones did, and
its latency counts from when it was due, so a slow server cannot hide its queueing),
through ``open_loop``: raw keep-alive connections and pre-built requests, so that the
generator (which shares the machine's cores with the servers) costs a small fraction of
what the servers do; its own CPU time per request is reported
(``generator_cpu_ms_per_request``).
After each router phase it polls GET /api/v1/requests/{id} until every acknowledged
(200) request is terminal; one still not terminal after ``--drain-timeout`` is lost.
Prints JSON: achieved rate, p50/p99/max latency, errors by HTTP status, acknowledged,
completed, failed, lost, and the router/bare ratios of rate and latency; with ``--repeat
N`` each rate runs N times (bare, router, bare, router, ...) and ``summary`` gives, per
rate, the sorted added p99 of the runs and their median. Each phase reports the
machine's ``steal_ms`` (CPU time the hypervisor withheld, from /proc/stat). For the servers
it starts (Linux), it also reports each one's own CPU time per answered request during
the phase (``server_cpu_ms_per_request``, user + system of the process and its children,
such as the router's journal writer, from /proc; split by thread and child process in
``server_thread_cpu_ms_per_request``) and the rate that
implies on one fully available core (``implied_single_core_rps``): the load generator
shares the machine's cores with the servers, so the achieved rate can be bounded by the
machine rather than by the server.

``--store URL`` (repeatable) starts one more router per URL, with that store
(``journal.path``: a ``postgresql://`` URL; ``pg-temp`` starts a throwaway PostgreSQL for
the run, initdb/pg_ctl as in the tests, ``fsync`` and ``synchronous_commit`` on, with a
database per router; ``pg-temp?options=-csynchronous_commit%3Doff`` adds libpq URL
parameters), named ``router@<scheme>`` (``-2``, ... for more of one scheme; ``stores``
gives their URLs) in the results and driven in the same phases as the SQLite router,
so the figures of both stores come from one run; ``vs_bare`` gives each router's rate
ratio and added p50/p99 against the bare endpoint, and ``database_cpu_ms_per_request``
the PostgreSQL server's CPU time (all its processes) per answered request.

Traffic stays on 127.0.0.1 and is bounded: at most sum(rates) * duration requests per
target, a cap of ``--max-inflight`` open requests (beyond it a due request is counted as
``not_sent``), and every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_loop

ROOT = Path(__file__).resolve().parent.parent
SERVICE_KEY = "bench-service-key-0123456789"
TERMINAL = {"completed", "failed", "cancelled", "rejected"}
ROUTE = "/api/v1/route"


# -- the bare endpoint (run as `service_load.py --bare-server PORT`) -------------------------


def bare_server(port: int) -> None:
    """A Starlette app that parses the JSON body and answers a small JSON envelope."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    count = 0

    async def route(request: Request) -> JSONResponse:
        nonlocal count
        body = await request.json()
        count += 1
        data = {"request_id": body.get("request_id") or f"bare-{count}", "status": "accepted"}
        return JSONResponse({"status": "success", "data": data, "error": None, "meta": {}})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "success", "data": {"ready": True}})

    app = Starlette(routes=[Route(ROUTE, route, methods=["POST"]), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def router_config(path: Path, journal: Path | str, intake_dir: str = "") -> None:
    """Limits high enough that only the service's speed limits the run."""
    import yaml

    big = 1_000_000_000
    cfg = {
        "auth": {"keys": [{"key": SERVICE_KEY, "user_id": "orchestrator", "role": "service"}]},
        "user_quota_manager": {
            "default_gpu_limit": 1_000_000,
            "default_request_limit": 1_000_000,
            "default_priority_limit": 1_000_000,
            "requests_per_minute": 100_000_000,
            "requests_per_day": big,
        },
        "queue": {"max_length": 10_000_000},
        "journal": {"path": str(journal), "intake_dir": intake_dir},
        "logging": {"level": "WARNING"},
    }
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {limit}s:\n{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- load ------------------------------------------------------------------------------------


class Client:
    """POST/GET returning (status, parsed JSON or None): aiohttp when installed (about 3x
    less CPU per request than httpx, and the generator shares this machine's cores with
    the server), else httpx. Either raises ``ClientFailure`` for a transport error."""

    def __init__(self, base: str, connections: int, timeout: float, kind: str) -> None:
        self.base, self.kind = base, kind
        if kind == "aiohttp":
            import aiohttp

            self._aiohttp = aiohttp
            self._s = aiohttp.ClientSession(
                base_url=base,
                connector=aiohttp.TCPConnector(limit=connections),
                timeout=aiohttp.ClientTimeout(total=timeout),
            )
        else:
            limits = httpx.Limits(
                max_connections=connections, max_keepalive_connections=connections
            )
            self._h = httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout)

    async def call(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        try:
            if self.kind == "aiohttp":
                async with self._s.request(method, path, data=body, headers=headers) as r:
                    raw = await r.read()
                    status = r.status
            else:
                r = await self._h.request(method, path, content=body, headers=headers)
                raw, status = r.content, r.status_code
        except (TimeoutError, httpx.HTTPError, OSError) as exc:
            raise ClientFailure(type(exc).__name__) from exc
        except Exception as exc:  # aiohttp.ClientError and kin
            if self.kind == "aiohttp" and isinstance(exc, self._aiohttp.ClientError):
                raise ClientFailure(type(exc).__name__) from exc
            raise
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    async def aclose(self) -> None:
        if self.kind == "aiohttp":
            await self._s.close()
        else:
            await self._h.aclose()


class ClientFailure(Exception):
    pass


def default_client() -> str:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return "httpx"
    return "aiohttp"


async def drive(
    base: str, rate: int, duration: float, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    """Send rate * duration POSTs at a constant rate (``open_loop``: latency from each
    one's due time) and report what came back, with this generator's own CPU time."""
    n = int(rate * duration)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "Content-Type": "application/json"}
    ids = [f"{tag}-{i}" for i in range(n)]
    requests = [
        open_loop.post(
            ROUTE,
            host,
            int(port),
            json.dumps(
                {
                    "request_id": ids[i],
                    "user_id": f"user{i % args.users}",
                    "model_id": "llama-7b",
                    "priority": 1 + i % 5,
                    "type": "inference",
                    "resource_requirements": {"memory": 1000, "expected_duration": args.job_ms},
                }
            ).encode(),
            headers,
        )
        for i in range(n)
    ]
    cpu0 = open_loop.cpu_s()
    run = await open_loop.open_loop(
        host,
        int(port),
        requests,
        rate,
        max_connections=args.connections,
        max_inflight=args.max_inflight,
        timeout_s=args.timeout,
    )
    cpu = open_loop.cpu_s() - cpu0
    codes: dict[str, int] = {}
    for status in run.status:
        code = "transport_error" if status is None else str(status)
        codes[code] = codes.get(code, 0) + 1
    answered = len(run.status)
    elapsed = max(run.last_done - run.first_due, 1e-9)
    lat = run.latency_s
    return {
        "target_rate": rate,
        "sent": n - run.not_sent,
        "not_sent": run.not_sent,
        "answered": answered,
        "unanswered": n - run.not_sent - answered,
        "achieved_rps": round(answered / elapsed, 1),
        "ok": codes.get("200", 0),
        "errors": {k: v for k, v in sorted(codes.items()) if k != "200"},
        "p50_ms": open_loop.percentile_ms(lat, 0.50),
        "p99_ms": open_loop.percentile_ms(lat, 0.99),
        "max_ms": open_loop.percentile_ms(lat, 1.0),
        "generator_cpu_ms_per_request": round(cpu * 1000.0 / max(1, answered), 3),
        "acked_ids": [ids[i] for i, st in zip(run.index, run.status, strict=True) if st == 200],
    }


async def check_terminal(base: str, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Poll every acknowledged request until terminal; what is not by the deadline is lost."""
    headers = {"authorization": f"Bearer {SERVICE_KEY}"}
    pending = set(ids)
    states: dict[str, int] = {}
    deadline = time.monotonic() + args.drain_timeout
    sem = asyncio.Semaphore(64)
    client = Client(base, 64, args.timeout, args.client)

    async def one(rid: str) -> None:
        async with sem:
            try:
                status, data = await client.call("GET", f"/api/v1/requests/{rid}", None, headers)
            except ClientFailure:
                return
        if status == 200:
            state = data["data"]["status"]
            if state in TERMINAL:
                pending.discard(rid)
                states[state] = states.get(state, 0) + 1

    try:
        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(one(rid) for rid in list(pending)))
            if pending:
                await asyncio.sleep(0.25)
    finally:
        await client.aclose()
    return {"terminal": states, "lost": len(pending), "lost_ids": sorted(pending)[:10]}


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_async(coro: Any) -> Any:
    """Run on uvloop when it is installed (less CPU per request for the generator)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def thread_cpu_seconds(pid: int | None) -> dict[str, float]:
    """User + system CPU time so far of a process's main thread (the event loop), of its
    other threads together (checkpoints, ...) and of its child processes (the journal
    writer), Linux."""
    out: dict[str, float] = {}
    if pid is None:
        return out
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                name = "main" if task.name == str(pid) else "other_threads"
                out[name] = out.get(name, 0.0) + cpu
                for child in (task / "children").read_text().split():
                    child_cpu = cpu_seconds(int(child))
                    if child_cpu is not None:
                        out["child_processes"] = out.get("child_processes", 0.0) + child_cpu
    return out


def steal_ms() -> float | None:
    """CPU time the hypervisor gave to others while this machine's CPUs wanted it (the
    "steal" of /proc/stat, summed over CPUs, ms since boot), or None off Linux. A run
    with much of it measured the host's neighbours too."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def start_router(
    tmp: Path, name: str, journal: Path | str, args: argparse.Namespace, procs: list[Any]
) -> tuple[str, int]:
    """``gpu-router serve`` on ``journal`` (a file or a store URL); its URL and pid."""
    port = free_port()
    cfg = tmp / f"{name}.yaml"
    router_config(cfg, journal, args.intake_dir)
    log = tmp / f"{name}.log"
    cmd = [sys.executable, "-m", "gpu_router.cli", "serve", "--config", str(cfg)]
    cmd += ["--virtual-gpus", str(args.virtual_gpus), "--host", "127.0.0.1", "--port", str(port)]
    procs.append(start(cmd, log))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, procs[-1], log)
    return url, procs[-1].pid


def temp_postgres() -> Any:
    """A throwaway PostgreSQL server (the tests' ``pg_server``), started."""
    sys.path.insert(0, str(ROOT))
    from tests.shim.store.pg_server import PgServer, missing_reason

    why = missing_reason()
    if why is not None:
        raise SystemExit(f"--store pg-temp: {why}")
    server = PgServer()
    server.start()
    return server


def postmaster_pid(server: Any) -> int | None:
    """The pid of a temporary server's postmaster (its first line of postmaster.pid)."""
    with contextlib.suppress(OSError, ValueError):
        return int((server.data / "postmaster.pid").read_text().split("\n", 1)[0])
    return None


def versus(router: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """A router's rate ratio and added p50/p99 (ms) against the bare endpoint."""
    out: dict[str, Any] = {
        "rate_ratio": round(router["achieved_rps"] / max(bare["achieved_rps"], 1e-9), 3)
    }
    if router["p99_ms"] is not None and bare["p99_ms"] is not None:
        out["added_p50_ms"] = round(router["p50_ms"] - bare["p50_ms"], 3)
        out["added_p99_ms"] = round(router["p99_ms"] - bare["p99_ms"], 3)
    return out


def run_phase(
    base: str,
    rate: int,
    args: argparse.Namespace,
    tag: str,
    check: bool,
    pid: int | None = None,
    db_pid: int | None = None,
) -> dict[str, Any]:
    threads0, steal0 = thread_cpu_seconds(pid), steal_ms()
    db0 = thread_cpu_seconds(db_pid)
    res = run_async(drive(base, rate, args.duration, args, tag))
    threads1, steal1 = thread_cpu_seconds(pid), steal_ms()
    db1 = thread_cpu_seconds(db_pid)
    if db0 and db1 and res["answered"]:
        used = sum(db1.values()) - sum(db0.values())
        res["database_cpu_ms_per_request"] = round(used * 1000.0 / res["answered"], 3)
    if steal0 is not None and steal1 is not None:
        res["steal_ms"] = round(steal1 - steal0)
    if threads0 and threads1 and res["answered"]:
        per = (sum(threads1.values()) - sum(threads0.values())) / res["answered"]
        res["server_cpu_ms_per_request"] = round(per * 1000.0, 3)
        res["implied_single_core_rps"] = round(1.0 / per) if per > 0 else None
        res["server_thread_cpu_ms_per_request"] = {
            name: round((t - threads0.get(name, 0.0)) * 1000.0 / res["answered"], 3)
            for name, t in sorted(threads1.items())
            if t - threads0.get(name, 0.0) > 0
        }
    ids = res.pop("acked_ids")
    res["acknowledged"] = len(ids)
    if check:
        t = time.monotonic()
        res.update(run_async(check_terminal(base, ids, args)))
        res["terminal_check_s"] = round(time.monotonic() - t, 2)
    return res


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per rate, over the repeats: the router's added p99 latency of each (sorted) and
    their median, and the router's p99 and steal of each."""
    out: dict[str, Any] = {}
    for rate in sorted({row["rate"] for row in rows}):
        mine = [row for row in rows if row["rate"] == rate]
        added = sorted(row["added_p99_ms"] for row in mine if "added_p99_ms" in row)
        entry: dict[str, Any] = {
            "router_p99_ms": [row["router"]["p99_ms"] for row in mine if "router" in row],
            "router_steal_ms": [row["router"].get("steal_ms") for row in mine if "router" in row],
        }
        if added:
            entry["added_p99_ms_sorted"] = added
            entry["added_p99_ms_median"] = added[len(added) // 2]
        out[str(rate)] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="100,500,1000,2000")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    p.add_argument("--repeat", type=int, default=1, help="runs of each rate (a p99 of 5 s varies)")
    p.add_argument("--virtual-gpus", type=int, default=64)
    p.add_argument(
        "--intake-dir",
        default="",
        help="the router's journal.intake_dir (default: beside the journal; /dev/shm: "
        "shared memory)",
    )
    p.add_argument("--job-ms", type=int, default=20, help="expected_duration of each request")
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument(
        "--client",
        choices=("aiohttp", "httpx"),
        default=default_client(),
        help="client of the terminal-state check (the load itself goes through open_loop)",
    )
    p.add_argument("--max-inflight", type=int, default=4096)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--targets", default="bare,router")
    p.add_argument(
        "--store",
        action="append",
        metavar="URL",
        help="one more router on this store (a postgresql:// URL, or pg-temp: a throwaway "
        "PostgreSQL for the run); repeatable",
    )
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument(
        "--router-url",
        help="drive a router already running on loopback (with this script's service key) "
        "instead of starting one",
    )
    p.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    rates = [int(r) for r in args.rates.split(",")]
    if not 1 <= args.repeat <= 20:
        p.error("--repeat must be between 1 and 20")
    if any(not 1 <= r <= 10_000 for r in rates) or not 0 < args.duration <= 60:
        p.error("rates must be in [1, 10000] and duration in (0, 60]")
    targets = args.targets.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="gpu-router-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    out: dict[str, Any] = {
        "benchmark": "service_load",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            k: v for k, v in vars(args).items() if k not in ("bare_server", "out", "router_url")
        },
        "stores": {},
        "results": [],
    }
    pg_servers: list[Any] = []
    db_pids: dict[str, int | None] = {}
    try:
        urls = {}
        pids: dict[str, int] = {}
        if "router" in targets and args.router_url:
            if not args.router_url.startswith(("http://127.0.0.1:", "http://localhost:")):
                p.error("--router-url must be on loopback")
            urls["router"] = args.router_url.rstrip("/")
        elif "router" in targets:
            urls["router"], pids["router"] = start_router(
                tmp, "router", tmp / "journal.sqlite3", args, procs
            )
        for n, url in enumerate(args.store or []):
            temp = None
            if url.split("?", 1)[0] == "pg-temp":  # one server, a database per router
                if not pg_servers:
                    pg_servers.append(temp_postgres())
                temp = pg_servers[0]
                query = url.partition("?")[2]
                url = temp.create_database("bench") + (f"?{query}" if query else "")
            scheme = url.split("://", 1)[0] if "://" in url else "sqlite"
            name = f"router@{scheme}" + (f"-{n + 1}" if f"router@{scheme}" in urls else "")
            urls[name], pids[name] = start_router(tmp, name, url, args, procs)
            targets.append(name)
            out["stores"][name] = url
            db_pids[name] = postmaster_pid(temp) if temp is not None else None
        if "bare" in targets:
            port = free_port()
            log = tmp / "bare.log"
            procs.append(start([sys.executable, __file__, "--bare-server", str(port)], log))
            urls["bare"] = f"http://127.0.0.1:{port}"
            pids["bare"] = procs[-1].pid
            wait_ready(urls["bare"], procs[-1], log)
        run_tag = os.urandom(
            4
        ).hex()  # fresh ids per run: a rerun against --router-url is not a replay
        for rate, rep in ((r, n) for r in rates for n in range(args.repeat)):
            row: dict[str, Any] = {"rate": rate, "repeat": rep}
            for target in targets:
                row[target] = run_phase(
                    urls[target],
                    rate,
                    args,
                    f"{target}-{rate}-{rep}-{run_tag}",
                    check=target.startswith("router"),
                    pid=pids.get(target),
                    db_pid=db_pids.get(target),
                )
                print(f"# {target} @ {rate}/s: {json.dumps(row[target])}", file=sys.stderr)
            if "router" in row and "bare" in row:
                r, b = row["router"], row["bare"]
                row["rate_ratio"] = round(r["achieved_rps"] / max(b["achieved_rps"], 1e-9), 3)
                if r["p99_ms"] is not None and b["p99_ms"] is not None:
                    row["added_p50_ms"] = round(r["p50_ms"] - b["p50_ms"], 3)
                    row["added_p99_ms"] = round(r["p99_ms"] - b["p99_ms"], 3)
            if "bare" in row:
                row["vs_bare"] = {t: versus(row[t], row["bare"]) for t in targets if t != "bare"}
            out["results"].append(row)
        out["summary"] = summary(out["results"])
    finally:
        for proc in procs:
            stop(proc)
        for server in pg_servers:
            server.close()
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
