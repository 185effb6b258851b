"""A PostgreSQL server for the store tests (``pg_server``), one for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .pg_server import PgServer, missing_reason


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    why = missing_reason()
    if why is not None:
        pytest.skip(why)
    server = PgServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
