"""A PostgreSQL server for the store tests (``pg_server``), one for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .pg_server import PgServer, running_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    yield from running_server()
