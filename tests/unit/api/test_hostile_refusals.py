"""Strings once accepted that became configuration text, or that a proxy refused later, are
refused up front with the field's path: by `controlplane validate` (exit 2, one line) and by
`POST /v1/config:validate` (422 naming the path)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import base_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

Change = Callable[[dict[str, Any]], None]


def endpoint(address: str) -> Change:
    return lambda c: c["clusters"][0]["endpoints"][0].update(address=address)


def route(**fields: Any) -> Change:
    return lambda c: c["listeners"][0]["virtual_hosts"][0]["routes"][0].update(fields)


def health_check_path(path: str) -> Change:
    return lambda c: c["clusters"][0].update(health_check={"path": path})


ENDPOINT = "clusters[0].endpoints[0].address"
ROUTE = "listeners[0].virtual_hosts[0].routes[0]"

CASES: dict[str, tuple[Change, str, str]] = {
    "IPv6 zone id carrying directives": (
        endpoint("[::1%lo init-addr none\n    http-request deny if TRUE\n#]:18083"),
        ENDPOINT,
        "control character",
    ),
    "IPv6 zone id": (endpoint("[::1%lo]:18083"), ENDPOINT, "zone ids are not supported"),
    "host name with a line break": (endpoint("foo\n:80"), ENDPOINT, "control character"),
    "port in Arabic-Indic digits": (
        endpoint("127.0.0.1:\u0661\u0668\u0660\u0668\u0663"),
        ENDPOINT,
        "port must be a number from 1 to 65535",
    ),
    "regex with a line break": (
        route(match={"path": {"regex": "/api\n"}}),
        f"{ROUTE}.match.path.regex",
        "printable ASCII",
    ),
    "regex flag x": (
        route(match={"path": {"regex": "(?x)/api"}}),
        f"{ROUTE}.match.path.regex",
        "inline flag (?x) is not supported by both Envoy (RE2)",
    ),
    "nested repeats over 1000": (
        route(match={"headers": [{"name": "x-a", "regex": "(a{100}){100}"}]}),
        f"{ROUTE}.match.headers[0].regex",
        "multiply to 10000; Envoy (RE2) allows at most 1000",
    ),
    "health check path with #": (
        health_check_path("/healthz#x"),
        "clusters[0].health_check.path",
        "'#' at position 8",
    ),
    "health check path with a quote": (
        health_check_path('/health"z'),
        "clusters[0].health_check.path",
        "'\"' at position 7",
    ),
    "direct response body of 4097 bytes": (
        route(backends=None, direct_response={"status": 200, "body": "é" * 2048 + "!"}),
        f"{ROUTE}.direct_response.body",
        "at most 4096 bytes of UTF-8 (Envoy's direct response limit), not 4097",
    ),
}


def hostile(case: str) -> dict[str, Any]:
    config = base_config()
    CASES[case][0](config)
    return config


@pytest.mark.parametrize("case", list(CASES))
def test_validate_command_refuses_it_in_one_line(case: str, tmp_path: Path) -> None:
    _, path, message = CASES[case]
    source = tmp_path / "hostile.json"
    source.write_text(json.dumps(hostile(case)))
    result = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "validate", str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{source}: {path}: ") and message in line, line


@pytest.mark.parametrize("case", list(CASES))
def test_validate_endpoint_refuses_it_with_the_path(case: str, client: TestClient) -> None:
    _, path, message = CASES[case]
    reply = client.post("/v1/config:validate", json=hostile(case))
    assert reply.status_code == 422, reply.text
    [issue] = reply.json()["issues"]
    assert issue["path"] == path and message in issue["message"], issue
