"""An API over a fresh SQLite store, with tokens of each scope and a seeded config."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import InMemoryStatus, RecordingPropagator, TokenSet, create_app
from controlplane.model import parse_config
from controlplane.store import SQLiteStore, Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient prefers httpx2
    from fastapi.testclient import TestClient as _TestClient


class TestClient(_TestClient):
    """Starlette's test client over https: the API refuses tokens over plain HTTP from
    anywhere but loopback, and the test client's peer is not a loopback address. A client of
    a loopback URL (`LOCAL`) calls from a loopback address, as it would for real."""

    __test__ = False

    def __init__(self, app: Any, **kwargs: Any) -> None:
        kwargs.setdefault("base_url", "https://testserver")
        if kwargs["base_url"].startswith("http://127."):
            kwargs.setdefault("client", ("127.0.0.1", 50000))
        super().__init__(app, **kwargs)


READ_TOKEN = "reader-secret-0123456789"
WRITE_TOKEN = "writer-secret-0123456789"
ADMIN_TOKEN = "admin-secret-0123456789"
AGENT_TOKEN = "agent-secret-0123456789"
LOCAL = "http://127.0.0.1"
"""The base URL of test clients to `insecure_local` apps, which answer loopback names only."""
TOKENS = TokenSet.from_data(
    [
        {"name": "reader", "token": READ_TOKEN, "scopes": ["read"]},
        {"name": "writer", "token": WRITE_TOKEN, "scopes": ["write"]},
        {"name": "admin", "token": ADMIN_TOKEN, "scopes": ["read", "write"]},
        {"name": "agent", "token": AGENT_TOKEN, "scopes": ["agent"], "groups": ["default"]},
    ],
    "tests",
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def base_config() -> dict[str, Any]:
    """Two routes on one virtual host, two clusters."""
    return {
        "listeners": [
            {
                "name": "web",
                "address": "127.0.0.1:10000",
                "protocol": "http",
                "virtual_hosts": [
                    {
                        "name": "site",
                        "domains": ["*"],
                        "routes": [
                            {
                                "name": "api",
                                "match": {"path": {"prefix": "/api"}},
                                "backends": [{"cluster": "api"}],
                            },
                            {"name": "default", "backends": [{"cluster": "web"}]},
                        ],
                    }
                ],
            }
        ],
        "clusters": [
            {"name": "api", "endpoints": [{"address": "127.0.0.1:18081"}]},
            {"name": "web", "endpoints": [{"address": "127.0.0.1:18083"}]},
        ],
    }


def state(store: Store) -> tuple[int, str] | None:
    """What must not move after a refused write: head number and content hash."""
    head = store.head()
    return (head.number, head.content_hash) if head else None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "api.db")
    yield s
    s.close()


@pytest.fixture
def seeded(store: SQLiteStore) -> SQLiteStore:
    store.commit(parse_config(base_config()), None, "seed", "seed")
    return store


@pytest.fixture
def status() -> InMemoryStatus:
    return InMemoryStatus()


@pytest.fixture
def propagator() -> RecordingPropagator:
    return RecordingPropagator()


@pytest.fixture
def client(
    seeded: SQLiteStore, status: InMemoryStatus, propagator: RecordingPropagator
) -> Iterator[TestClient]:
    """An admin's client (read and write) to an API over the seeded store."""
    app = create_app(seeded, propagator, status, TOKENS)
    with TestClient(app, headers=bearer(ADMIN_TOKEN)) as c:
        yield c


@pytest.fixture
def anonymous(seeded: SQLiteStore) -> Iterator[TestClient]:
    """A client without a token, to an API that requires one."""
    with TestClient(create_app(seeded, tokens=TOKENS)) as c:
        yield c
