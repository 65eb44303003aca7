"""`controlplane apply` and `controlplane status`, run as processes against a served API.

The fleet is the in-memory StatusSource, fed by a propagator that acks or refuses what it
is given: these tests are about the command, not the proxies.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.api import InMemoryStatus, TokenSet, create_app
from controlplane.model import Config, parse_config
from controlplane.store import SQLiteStore

from .conftest import base_config
from .served import served

TOKEN = "cli-token-0123456789"
TOKENS = TokenSet.from_data([{"name": "cli", "token": TOKEN, "scopes": ["read", "write"]}], "t")


class FakeFleet:
    """One Envoy and one HAProxy that ack every revision, or refuse from `refuse_from` on."""

    def __init__(self, status: InMemoryStatus) -> None:
        self.status = status
        self.refuse_from: int | None = None
        status.connect("envoy-a", "envoy", "default")
        status.connect("haproxy-a", "haproxy", "default")

    def publish(self, revision: int, config: Config) -> None:
        self.status.ack("envoy-a", revision)
        if self.refuse_from is not None and revision >= self.refuse_from:
            self.status.nack("haproxy-a", revision, "[ALERT] parsing failed")
        else:
            self.status.ack("haproxy-a", revision)


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet(InMemoryStatus())


@pytest.fixture
def server(tmp_path: Path, fleet: FakeFleet) -> Iterator[str]:
    store = SQLiteStore(tmp_path / "cli.db")
    try:
        app = create_app(store, fleet, fleet.status, TOKENS)
        with served(app) as url:
            yield url
    finally:
        store.close()


def controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, cluster_port: int = 18083) -> Path:
    config = base_config()
    config["clusters"][1]["endpoints"][0]["address"] = f"127.0.0.1:{cluster_port}"
    path.write_text(yaml.safe_dump(config))
    return path


def test_apply_shows_the_diff_and_ends_acked_by_all(server: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml")
    first = controlplane("apply", str(path), "--server", server, "--token", TOKEN)
    assert first.returncode == 0, first.stderr
    assert "+ cluster api" in first.stdout and "+ route web/site/api" in first.stdout
    assert "revision 1" in first.stdout
    assert first.stdout.strip().endswith("acked by 2/2")

    write_config(path, 18099)
    second = controlplane("apply", str(path), "--server", server, "--token", TOKEN)
    assert second.returncode == 0, second.stderr
    assert "~ cluster web" in second.stdout and "+ cluster" not in second.stdout
    assert "revision 2" in second.stdout and "acked by 2/2" in second.stdout

    again = controlplane("apply", str(path), "--server", server, "--token", TOKEN)
    assert "no changes against revision 2" in again.stdout and again.returncode == 0


def test_apply_reports_the_nacks(server: str, fleet: FakeFleet, tmp_path: Path) -> None:
    fleet.refuse_from = 1
    path = write_config(tmp_path / "c.yaml")
    result = controlplane("apply", str(path), "--server", server, "--token", TOKEN)
    assert result.returncode == 1
    assert "acked by 1/2; refused (NACK) by:" in result.stderr
    assert "haproxy haproxy-a (default): [ALERT] parsing failed" in result.stderr


def test_apply_of_a_config_the_server_refuses_exits_2_one_line_per_issue(
    server: str, tmp_path: Path
) -> None:
    config = base_config()
    config["clusters"][0].update(lb_policy="maglev", hash_on={"source_ip": True})
    path = tmp_path / "maglev.yaml"
    path.write_text(yaml.safe_dump(config))
    result = controlplane("apply", str(path), "--server", server, "--token", TOKEN)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}: clusters[0].lb_policy: haproxy has no maglev hashing; use ring_hash "
        "(consistent hashing) [haproxy]"
    )


def test_apply_that_empties_a_group_with_connected_proxies_needs_saying_so(
    server: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "c.yaml")
    assert controlplane("apply", str(path), "--server", server, "--token", TOKEN).returncode == 0
    empty = tmp_path / "empty.yaml"
    empty.write_text("clusters: []\n")
    refused = controlplane("apply", str(empty), "--server", server, "--token", TOKEN)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"{empty}: listeners: node group 'default' would be left without listeners (no "
        "listener); its connected proxies: envoy-a, haproxy-a"
    )
    allowed = controlplane(
        "apply", str(empty), "--server", server, "--token", TOKEN, "--allow-empty-groups"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "revision 2" in allowed.stdout


def test_apply_when_another_writer_commits_first_exits_1_and_says_to_apply_again(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "race.db")

    class Interloper:
        """Commits a revision of its own while `apply` looks at its diff."""

        def explain(self, old: Config | None, new: Config) -> dict[str, Any]:
            head = store.head()
            store.commit(parse_config(base_config()), head.number if head else None, "other")
            return {}

    try:
        app = create_app(store, tokens=TOKENS, explainer=Interloper())
        with served(app) as url:
            path = write_config(tmp_path / "c.yaml", 18099)
            result = controlplane("apply", str(path), "--server", url, "--token", TOKEN)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.strip() == (
            f"{url}: the config changed: the head revision is 1; read it again and retry "
            "(someone else changed the config; apply again)"
        )
        assert store.head().number == 1  # type: ignore[union-attr]
    finally:
        store.close()


def test_apply_without_a_valid_token_fails_cleanly(server: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml")
    result = controlplane("apply", str(path), "--server", server, "--token", "wrong-0123456789")
    assert result.returncode == 1
    assert result.stderr.strip() == f"{server}: unknown token"
    assert TOKEN not in result.stderr


def test_apply_to_no_server_fails_cleanly(tmp_path: Path) -> None:
    from tests.harness.ports import free_port

    path = write_config(tmp_path / "c.yaml")
    result = controlplane("apply", str(path), "--server", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_prints_the_fleet(server: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml")
    controlplane("apply", str(path), "--server", server, "--token", TOKEN)
    result = controlplane("status", "--server", server, "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "head revision 1; 2 proxies"
    assert lines[1].split() == [
        "ID",
        "KIND",
        "GROUP",
        "REVISION",
        "STATE",
        "LAST",
        "SEEN",
        "LAST",
        "NACK",
    ]
    assert lines[2].split()[:5] == ["envoy-a", "envoy", "default", "1", "current"]
    assert lines[3].split()[:5] == ["haproxy-a", "haproxy", "default", "1", "current"]


def test_explain_asks_the_server_and_prints_the_same_decision_as_the_file(
    server: str, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "c.yaml")
    assert controlplane("apply", str(path), "--server", server, "--token", TOKEN).returncode == 0
    asked = ("--listener", "web", "--path", "/api/x", "--header", "x-a=1")
    remote = controlplane("explain", "--server", server, "--token", TOKEN, *asked)
    local = controlplane("explain", str(path), *asked)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert "route      api (" in remote.stdout
    refused = controlplane("explain", "--server", server, "--token", TOKEN, "--listener", "nope")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "explain: listener: no listener named 'nope' (listeners: web)"
    )
