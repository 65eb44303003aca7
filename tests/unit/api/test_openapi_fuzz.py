"""A property-based run over the OpenAPI schema (schemathesis): whatever the request, no
5xx, every error in the common shape, and no refused write changes the store."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from controlplane.api import create_app
from controlplane.model import parse_config
from controlplane.store import SQLiteStore

from .conftest import base_config, state

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "10"))
TIMES: dict[str, float] = defaultdict(float)


# schemathesis reads the schema when tests are collected, so the app exists at import; the
# module fixture removes its store afterwards.
_DIR = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
_STORE = SQLiteStore(_DIR / "fuzz.db")
_STORE.commit(parse_config(base_config()), None, "seed", "seed")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_STORE, insecure_local=True))
schema.config.phases.update(phases=os.environ.get("API_FUZZ_PHASES", "examples,fuzzing").split(","))


@pytest.fixture(scope="module")
def fuzz_store() -> Iterator[SQLiteStore]:
    yield _STORE
    _STORE.close()
    shutil.rmtree(_DIR, ignore_errors=True)
    for k, v in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        print(f"{v:7.2f}s {k}")


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
    began = time.perf_counter()
    if case.method.upper() == "GET" and case.path == "/v1/status/wait":
        case.query = {**(case.query or {}), "timeout": 0}
    before = state(fuzz_store)
    response = case.call()
    status = response.status_code
    assert status < 500, (case.method, case.path, response.text)
    if status >= 400:
        body = response.json()
        assert set(body) == {"error", "issues"}, body
        assert all({"path", "message"} <= set(issue) for issue in body["issues"]), body
    if case.method.upper() in WRITE_METHODS and not 200 <= status < 300:
        assert state(fuzz_store) == before, (case.method, case.path, status)
    TIMES[f"{case.method} {case.path}"] += time.perf_counter() - began
