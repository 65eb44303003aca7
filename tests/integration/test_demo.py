"""`make run`: the demo serves the quickstart and the firewall example on a real Envoy and a
real HAProxy, and the firewall commands it prints give the statuses they promise when run as
printed, the SQL injection `?id=1' OR '1'='1` refused with 403 by both proxies. (The demo's
ports are moved to free ones; everything else is what `make run` does.)"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.demo import Demo, DemoOptions, demo_config, start_demo
from controlplane.model import Config, parse_config, split_address
from tests.harness.loop_thread import LoopThread
from tests.harness.ports import free_port
from tests.harness.verdicts import free_port_pair

pytestmark = [pytest.mark.envoy, pytest.mark.haproxy, pytest.mark.timeout(180)]
EXPECTED = re.compile(r"#\s*->\s*(\d{3})\s*$")


def _on_free_ports(config: Config) -> Config:
    """`config` with every listener and endpoint on a free port of its own host."""
    data = config.model_dump()
    for item in [*data["listeners"], *(e for c in data["clusters"] for e in c["endpoints"])]:
        host, _ = split_address(item["address"])
        item["address"] = f"{host}:{free_port()}"
    return parse_config(data)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    options = DemoOptions(
        run=tmp_path_factory.mktemp("demo"),
        api=f"127.0.0.1:{free_port()}",
        xds=f"127.0.0.1:{free_port()}",
        waf=f"127.0.0.1:{free_port_pair()}",
    )
    thread = LoopThread("demo")
    try:
        running = thread.run(start_demo(_on_free_ports(demo_config()), options), timeout=120)
        try:
            yield running
        finally:
            thread.run(running.stop(), timeout=90)
    finally:
        thread.close()


def _firewall_commands(instructions: str) -> list[tuple[str, int]]:
    """The commands of the printed firewall section, each with the status it promises."""
    section = instructions.split("The firewall", 1)[1].split("\n\n", 1)[0]
    found = []
    for line in section.splitlines()[1:]:
        promised = EXPECTED.search(line)
        assert promised is not None, f"a printed firewall command promises no status: {line}"
        found.append((line[: promised.start()].strip(), int(promised.group(1))))
    return found


def test_the_printed_sql_injection_gets_403_from_both_proxies(demo: Demo) -> None:
    commands = _firewall_commands(demo.instructions)
    attacks = [c for c, status in commands if "id=1' OR '1'='1" in c and status == 403]
    hosts = set()
    for command in attacks:
        url = re.search(r"http://([0-9.]+):", command)
        assert url is not None, command
        hosts.add(url.group(1))
    assert hosts == {
        "127.0.0.1",
        "127.0.0.2",
    }, "the attack is printed for both proxies (Envoy on 127.0.0.1, HAProxy on 127.0.0.2)"


def test_every_printed_firewall_command_gets_the_status_it_promises(
    demo: Demo, tmp_path: Path
) -> None:
    seen = []
    for command, promised in _firewall_commands(demo.instructions):
        done = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=30, cwd=tmp_path
        )
        print(f"{done.stdout.strip()} (promised {promised}): {command}")
        seen.append((command, done.stdout.strip(), str(promised)))
    assert [s for s in seen if s[1] != s[2]] == []
