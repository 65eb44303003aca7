"""Fixtures every test directory may use: a private PostgreSQL server and fresh databases."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.harness.postgres import PostgresServer, running_postgres

_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use, stopped at the end."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new empty database (no schema), dropped after the test."""
    name = f"test_{next(_names)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)
