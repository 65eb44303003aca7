"""A property-based run over the OpenAPI schema (schemathesis): whatever the request, no
5xx, every error in the common shape, and no refused write changes the store."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from controlplane.api import create_app
from controlplane.model import parse_config
from controlplane.store import SQLiteStore

from .conftest import ADMIN_TOKEN, TOKENS, base_config, state

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "10"))
COUNT = [0]
EXISTING = {"listener": "web", "virtual_host": "site", "route": "api", "cluster": "web", "n": 1}


# schemathesis reads the schema when tests are collected, so the app exists at import; the
# module fixture removes its store afterwards.
_DIR = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
_STORE = SQLiteStore(_DIR / "fuzz.db")
_STORE.commit(parse_config(base_config()), None, "seed", "seed")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_STORE, tokens=TOKENS))
schema.config.phases.update(phases=os.environ.get("API_FUZZ_PHASES", "examples,fuzzing").split(","))


@pytest.fixture(scope="module")
def fuzz_store() -> Iterator[SQLiteStore]:
    yield _STORE
    _STORE.close()
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_refused_writes_change_nothing(
    case: Any, fuzz_store: SQLiteStore
) -> None:
    if case.method.upper() == "GET" and case.path == "/v1/status/wait":
        case.query = {**(case.query or {}), "timeout": 0}
    COUNT[0] += 1
    if COUNT[0] % 2 == 0:  # every other case addresses objects that exist
        for name in case.path_parameters or {}:
            case.path_parameters[name] = EXISTING.get(name, case.path_parameters[name])
    before = state(fuzz_store)
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = case.call(base_url="https://testserver")  # tokens need TLS off loopback
    status = response.status_code
    assert status < 500, (case.method, case.path, response.text)
    if status >= 400:
        body = response.json()
        assert set(body) == {"error", "issues"}, body
        assert all({"path", "message"} <= set(issue) for issue in body["issues"]), body
    if case.method.upper() in WRITE_METHODS and not 200 <= status < 300:
        assert state(fuzz_store) == before, (case.method, case.path, status)
