"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` from the Debian
packages (``scripts/install-system-deps.sh``), run as an unprivileged user in a temporary
directory, listening on a free loopback port, stopped (and its directory removed) at the
end.

initdb refuses to run as root: when the tests run as root, the server runs as the
``postgres`` system user the Debian package creates (or ``gpu-router-pg``, created with
``useradd`` when neither exists). Authentication is ``trust`` on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

SUPERUSER = "gpu_router"
FALLBACK_USER = "gpu-router-pg"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


def missing_reason() -> str | None:
    """Why no server can be started here (None: one can)."""
    if pg_bin() is None:
        return (
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
            "scripts/install-system-deps.sh installs it)"
        )
    return None


def _run_as() -> str | None:
    """The user the server runs as (None: the current one, which is not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return FALLBACK_USER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary directory: :meth:`start`, :meth:`stop`
    (and start again: the data stays), :meth:`close` (stop, remove everything)."""

    def __init__(self, *, fsync: bool = True) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError(missing_reason())
        self.bin = bindir
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="gpu-router-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._dbs = 0
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self._pg(
            "initdb",
            *("-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"),
            "--no-sync",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 200\n"
                f"fsync = {'on' if fsync else 'off'}\n"
                "shared_buffers = 32MB\n"
            )

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
            timeout=120,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        for attempt in range(3):
            try:
                self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise RuntimeError(f"postgres did not start: {self.log_tail()}") from None
                # the port was taken meanwhile: another one
                self.port = _free_port()
                with open(self.data / "postgresql.conf", "a") as conf:
                    conf.write(f"port = {self.port}\n")
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: close the connections, clean shutdown; ``immediate``:
        as a crash, recovery from the WAL at the next start)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (
            subprocess.run(
                [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                capture_output=True,
                user=self.user,
            ).returncode
            == 0
        )

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        self._dbs += 1
        name = f"{prefix}_{os.getpid()}_{self._dbs}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-n:]
        return ""

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if self.running:
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def running_server() -> Iterator[PgServer]:
    """A started server for a pytest fixture (``yield from running_server()``), closed
    after the test; the test is skipped when PostgreSQL is not installed."""
    import pytest

    why = missing_reason()
    if why is not None:
        pytest.skip(why)
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
