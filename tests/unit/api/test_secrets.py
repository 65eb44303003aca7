"""Private keys never leave through the API, and a read-edit-write keeps them; certificates
and keys are inline PEM only, so no request makes the server read one of its files."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.api import create_app
from controlplane.model import parse_config
from controlplane.model.tls import pem_digest
from controlplane.store import SQLiteStore

from .conftest import (
    ADMIN_TOKEN,
    READ_TOKEN,
    TOKENS,
    TestClient,
    base_config,
    bearer,
    state,
)

CERTS = Path(__file__).resolve().parents[2] / "certs"
CERT = (CERTS / "example.com.crt").read_text()
KEY = (CERTS / "example.com.key").read_text()
OTHER_CERT = (CERTS / "other.test.crt").read_text()
OTHER_KEY = (CERTS / "other.test.key").read_text()
MARKER = f"redacted:sha256:{pem_digest(KEY)}"


def tls_config() -> dict[str, Any]:
    """The base config plus an https listener with two certificates."""
    config = base_config()
    config["listeners"].append(
        {
            "name": "secure",
            "address": "127.0.0.1:10443",
            "protocol": "https",
            "certificates": [
                {"server_names": ["example.com"], "cert": CERT, "key": KEY},
                {"server_names": ["other.test"], "cert": OTHER_CERT, "key": OTHER_KEY},
            ],
            "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": [{"backends": [{"cluster": "web"}]}]}
            ],
        }
    )
    return config


@pytest.fixture
def tls_store(store: SQLiteStore) -> SQLiteStore:
    store.commit(parse_config(tls_config()), None, "seed", "seed")
    return store


@pytest.fixture
def admin(tls_store: SQLiteStore) -> Iterator[TestClient]:
    with TestClient(create_app(tls_store, tokens=TOKENS), headers=bearer(ADMIN_TOKEN)) as c:
        yield c


@pytest.fixture
def reader(tls_store: SQLiteStore) -> Iterator[TestClient]:
    with TestClient(create_app(tls_store, tokens=TOKENS), headers=bearer(READ_TOKEN)) as c:
        yield c


def head_keys(store: SQLiteStore) -> list[str]:
    head = store.head()
    assert head is not None
    return [c.key for x in head.config.listeners for c in x.certificates]


@pytest.mark.parametrize(
    ("url", "accept"),
    [
        ("/v1/config", "application/json"),
        ("/v1/config", "application/yaml"),
        ("/v1/config?revision=1", "application/json"),
        ("/v1/config?revision=1", "application/yaml"),
        ("/v1/listeners", "application/json"),
        ("/v1/listeners/secure", "application/json"),
    ],
)
def test_no_read_shows_a_private_key(reader: TestClient, url: str, accept: str) -> None:
    reply = reader.get(url, headers={"Accept": accept})

    assert reply.status_code == 200, reply.text
    assert "PRIVATE KEY" not in reply.text
    assert MARKER in reply.text
    assert "BEGIN CERTIFICATE" in reply.text  # certificates are public


def test_a_dry_run_and_a_write_answer_show_no_private_key(admin: TestClient) -> None:
    dry = admin.post("/v1/config:validate", json=tls_config())
    assert dry.status_code == 200 and dry.json()["valid"], dry.text
    assert "PRIVATE KEY" not in dry.text

    listener = admin.get("/v1/listeners/secure").json()
    listener["request_id"] = True
    replaced = admin.put("/v1/listeners/secure", json=listener)
    assert replaced.status_code == 200, replaced.text
    assert "PRIVATE KEY" not in replaced.text and MARKER in replaced.text


@pytest.mark.parametrize("form", ["json", "yaml"])
def test_get_then_put_keeps_the_keys(admin: TestClient, tls_store: SQLiteStore, form: str) -> None:
    before = head_keys(tls_store)
    if form == "json":
        data = admin.get("/v1/config").json()
    else:
        data = yaml.safe_load(admin.get("/v1/config", headers={"Accept": "application/yaml"}).text)

    unchanged = admin.put("/v1/config", json=data, headers={"If-Match": '"1"'})
    assert unchanged.json() == {"revision": 1, "changed": False}, unchanged.text

    data["clusters"][0]["endpoints"][0]["address"] = "127.0.0.1:18099"
    changed = admin.put(
        "/v1/config",
        content=yaml.safe_dump(data),
        headers={"If-Match": '"1"', "Content-Type": "application/yaml"},
    )
    assert changed.json() == {"revision": 2, "changed": True}, changed.text
    assert head_keys(tls_store) == before == [KEY, OTHER_KEY]


def test_editing_a_listener_keeps_its_keys_and_new_keys_are_taken(
    admin: TestClient, tls_store: SQLiteStore
) -> None:
    listener = admin.get("/v1/listeners/secure").json()
    first, second = listener["certificates"]
    listener["certificates"] = [second, first]  # swapped, both still redacted
    assert admin.put("/v1/listeners/secure", json=listener).status_code == 200
    assert head_keys(tls_store) == [OTHER_KEY, KEY]

    patched = admin.patch(
        "/v1/listeners/secure",
        json={"certificates": [{"server_names": ["example.com"], "cert": CERT, "key": KEY}]},
    )
    assert patched.status_code == 200 and "PRIVATE KEY" not in patched.text
    assert head_keys(tls_store) == [KEY]


@pytest.mark.parametrize("method", ["PUT", "validate"])
def test_a_redacted_key_of_no_current_key_is_refused_at_its_path(
    admin: TestClient, tls_store: SQLiteStore, method: str
) -> None:
    data = admin.get("/v1/config").json()
    data["listeners"][1]["certificates"][1]["key"] = "redacted:sha256:" + "0" * 64
    before = state(tls_store)

    if method == "PUT":
        reply = admin.put("/v1/config", json=data)
    else:
        reply = admin.post("/v1/config:validate", json=data)

    assert reply.status_code == 422, reply.text
    [issue] = reply.json()["issues"]
    assert issue["path"] == "listeners[1].certificates[1].key"
    assert "no private key of the current config has this digest" in issue["message"]
    assert state(tls_store) == before


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cert", "/etc/passwd"),
        ("key", "/dev/zero"),
        ("cert", str(CERTS / "example.com.crt")),  # a valid PEM file: refused all the same
        ("key", str(CERTS / "example.com.key")),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "validate"])
def test_a_file_path_is_refused_over_rest_without_being_read(
    admin: TestClient,
    reader: TestClient,
    tls_store: SQLiteStore,
    field: str,
    value: str,
    method: str,
) -> None:
    data = copy.deepcopy(tls_config())
    data["listeners"][1]["certificates"][0][field] = value
    before = state(tls_store)

    if method == "PUT":
        reply = admin.put("/v1/config", json=data)
    else:
        reply = reader.post("/v1/config:validate", json=data)

    assert reply.status_code == 422, reply.text
    issues = reply.json()["issues"]
    assert {
        "path": f"listeners[1].certificates[0].{field}",
        "message": ("certificates and keys are inline PEM; the CLI resolves file paths"),
    } in issues, issues
    assert state(tls_store) == before
