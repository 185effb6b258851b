"""Adversarial connections against a real router on loopback: a header flood and a hold of
idle connections, with /health latency and the router's memory measured during each.

    .venv/bin/python benchmarks/adversarial.py [--header-mb 200] [--flooders 2]
        [--idle 3000] [--idle-clients 1] [--hold-s 10] [--compare-unguarded] [--out FILE]

Starts ``gpu-router serve`` (4 virtual GPUs, default ``connections`` limits unless
``--config`` names others) on 127.0.0.1, then runs, one after the other:

- ``baseline``: /health probed for 3 s, nothing else;
- ``header_flood``: ``--flooders`` connections from 127.0.0.2, each sending one request
  whose header value is ``--header-mb`` MB, in 64 KiB writes, until the router cuts it
  off; reports the bytes each got in and how long the cut took;
- ``idle_hold``: ``--idle`` connections opened and left idle, split over 127.0.0.3 and
  127.0.0.4, held ``--hold-s`` s (with ``--idle-clients N``: N processes at once, each
  holding ``--idle`` from an address of its own, up to 12,000 each: the issue's two
  clients of 10,500); reports how many the router refused at once (per
  address cap), how many it closed (idle timeout) and when.

During each phase /health is probed from 127.0.0.1 every 50 ms (p50, p99, max latency in
ms and failures: no 200 within 2 s) and the router's resident memory (VmRSS, MB) sampled
from /proc. With ``--compare-unguarded`` the same phases run against the same app under
plain uvicorn (the ASGI factory, uvicorn's own httptools protocol and options: no header
limit, no idle deadline before the first request), with the header flood scaled down to
``--unguarded-header-mb`` (default 32 MB: uvicorn reads it all) so the run stays short.

Loopback only, bounded: every phase has a deadline; the process exits by itself. Prints
JSON (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

CHUNK = b"a" * 65536
FLOOD_DEADLINE_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


class Probe:
    """/health every 50 ms and the router's RSS every 100 ms, on a thread, until stopped."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.lat_ms: list[float] = []
        self.failures = 0
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._health, daemon=True),
            threading.Thread(target=self._memory, daemon=True),
        ]

    def _health(self) -> None:
        with httpx.Client(base_url=self.url, timeout=2.0) as c:
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    ok = c.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.lat_ms.append((time.perf_counter() - t) * 1000.0)
                else:
                    self.failures += 1
                self._stop.wait(0.05)

    def _memory(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.rss.append(rss_mb(self.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> Probe:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def report(self) -> dict[str, Any]:
        lat = sorted(self.lat_ms)
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else lat * 99
        return {
            "health_ok": len(lat),
            "health_failures": self.failures,
            "health_p50_ms": round(statistics.median(lat), 2) if lat else None,
            "health_p99_ms": round(q[98], 2) if lat else None,
            "health_max_ms": round(lat[-1], 2) if lat else None,
            "rss_start_mb": round(self.rss[0], 1) if self.rss else None,
            "rss_max_mb": round(max(self.rss), 1) if self.rss else None,
            "rss_end_mb": round(self.rss[-1], 1) if self.rss else None,
        }


def connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5.0)
    s.connect(("127.0.0.1", port))
    return s


def flood_one(port: int, megabytes: int, out: dict[str, Any]) -> None:
    """One request with a ``megabytes`` MB header value; what got in, and when it stopped."""
    s = connect(port, "127.0.0.2")
    sent, t0, cut = 0, time.monotonic(), False
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-flood: ")
        while sent < megabytes << 20 and time.monotonic() - t0 < FLOOD_DEADLINE_S:
            s.sendall(CHUNK)
            sent += len(CHUNK)
        s.sendall(b"\r\n\r\n")
        s.recv(1024)  # the answer of a server that read it all
    except OSError:
        cut = True
    finally:
        s.close()
    out.update(sent_mb=round(sent / (1 << 20), 2), seconds=round(time.monotonic() - t0, 2))
    out["cut_off"] = cut


def header_flood(port: int, flooders: int, megabytes: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = [{} for _ in range(flooders)]
    threads = [
        threading.Thread(target=flood_one, args=(port, megabytes, r), daemon=True) for r in results
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(FLOOD_DEADLINE_S + 10)
    time.sleep(1.0)  # the probe sees the after-effect too
    return {"header_mb": megabytes, "flooders": results}


def idle_hold(
    port: int, count: int, hold_s: float, sources: tuple[str, ...] = ("127.0.0.3", "127.0.0.4")
) -> dict[str, Any]:
    """``count`` idle connections over the ``sources`` addresses, held ``hold_s`` s. A close
    is timed from its own connection's connect: refusals over a cap come about a second
    after it (``REFUSED_LINGER_S``), idle closes after ``idle_timeout_s``."""
    socks: list[tuple[socket.socket, float]] = []
    refused = 0
    for i in range(count):
        try:
            socks.append((connect(port, sources[i % len(sources)]), time.monotonic()))
        except OSError:
            refused += 1
    t0 = time.monotonic()
    after: dict[int, float] = {}  # connection -> s from its connect to its close
    for s, _ in socks:
        s.setblocking(False)
    while time.monotonic() - t0 < hold_s:
        for n, (s, opened) in enumerate(socks):
            if n in after:
                continue
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 503"):  # closed, or refused over a cap
                after[n] = time.monotonic() - opened
        time.sleep(0.05)
    for s, _ in socks:
        s.close()
    times = sorted(after.values())
    early = sum(1 for t in times if t < 3.0)
    return {
        "opened": len(socks),
        "connect_failed": refused,
        "closed_by_router": len(times),
        "closed_within_3_s_of_connect": early,
        "closed_later": len(times) - early,
        "median_close_s_after_connect": round(statistics.median(times), 2) if times else None,
        "last_close_s_after_connect": round(times[-1], 2) if times else None,
        "held_open_to_the_end": len(socks) - len(times),
        "hold_s": hold_s,
    }


def idle_clients(port: int, clients: int, count: int, hold_s: float) -> dict[str, Any]:
    """``clients`` processes at once, each holding ``count`` idle connections from an
    address of its own (127.0.0.3, .4, ...): more than one process's descriptors allow."""
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, __file__, "--child-hold", f"127.0.0.{3 + k}", str(port)),
                *("--idle", str(count), "--hold-s", str(hold_s)),
            ],
            stdout=subprocess.PIPE,
        )
        for k in range(clients)
    ]
    parts = [json.loads(p.communicate(timeout=hold_s + 120)[0]) for p in procs]
    out: dict[str, Any] = {"clients": clients, "per_client": parts}
    for key in ("opened", "connect_failed", "closed_by_router", "closed_within_3_s_of_connect"):
        out[key] = sum(part[key] for part in parts)
    out["held_open_to_the_end"] = sum(part["held_open_to_the_end"] for part in parts)
    return out


def start(
    args: argparse.Namespace, tmp: Path, guarded: bool
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cfg: dict[str, Any] = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    cfg.setdefault("logging", {"level": "WARNING"})
    cfg.setdefault("journal", {"path": str(tmp / f"journal-{port}.sqlite3")})
    path = tmp / f"config-{port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_")}
    env |= {"CONFIG_PATH": str(path), "GPU_ROUTER_VIRTUAL_GPUS": "4"}
    if guarded:
        cmd = ["-m", "gpu_router.cli", "serve", "--virtual-gpus", "4", "--port", str(port)]
    else:
        cmd = ["-m", "uvicorn", "--factory", "gpu_router.shim.http.asgi:app_from_env"]
        cmd += ["--port", str(port), "--log-level", "warning", "--http", "httptools"]
    log = open(tmp / f"server-{port}.log", "wb")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen([sys.executable, *cmd], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {(tmp / f'server-{port}.log').read_text()[-2000:]}")


def run_target(args: argparse.Namespace, tmp: Path, guarded: bool) -> dict[str, Any]:
    proc, port = start(args, tmp, guarded)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    megabytes = args.header_mb if guarded else args.unguarded_header_mb
    try:
        with Probe(url, proc.pid) as p:
            time.sleep(3.0)
        out["baseline"] = p.report()
        with Probe(url, proc.pid) as p:
            flood = header_flood(port, args.flooders, megabytes)
        out["header_flood"] = flood | p.report()
        with Probe(url, proc.pid) as p:
            if args.idle_clients > 1:
                hold = idle_clients(port, args.idle_clients, args.idle, args.hold_s)
            else:
                hold = idle_hold(port, args.idle, args.hold_s)
        out["idle_hold"] = hold | p.report()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", help="config.yaml for the router (default: defaults)")
    ap.add_argument("--header-mb", type=int, default=200)
    ap.add_argument("--unguarded-header-mb", type=int, default=32)
    ap.add_argument("--flooders", type=int, default=2)
    ap.add_argument("--idle", type=int, default=3000)
    ap.add_argument("--hold-s", type=float, default=10.0)
    ap.add_argument(
        "--idle-clients",
        type=int,
        default=1,
        help="processes holding --idle connections each (one address each); 1: this one",
    )
    ap.add_argument("--compare-unguarded", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--child-hold", nargs=2, metavar=("ADDRESS", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    per_process = 8000 if args.idle_clients == 1 and not args.child_hold else 12_000
    if not (1 <= args.flooders <= 16 and 1 <= args.idle <= per_process and 0 < args.hold_s <= 60):
        ap.error(f"bounded run: --flooders 1-16, --idle 1-{per_process}, --hold-s up to 60")
    if not 1 <= args.idle_clients <= 4:
        ap.error("bounded run: --idle-clients 1-4")
    if args.child_hold:
        address, port = args.child_hold
        print(json.dumps(idle_hold(int(port), args.idle, args.hold_s, (address,))))
        return 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result: dict[str, Any] = {"guarded": run_target(args, tmp, guarded=True)}
        if args.compare_unguarded:
            result["unguarded_uvicorn"] = run_target(args, tmp, guarded=False)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
