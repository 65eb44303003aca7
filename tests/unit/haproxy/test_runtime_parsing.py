"""Parsing of HAProxy CLI answers, map payloads, and the manager's bundle contract."""

from controlplane.haproxy.bundle import Bundle
from controlplane.proxies.haproxy.manager import contract_problems
from controlplane.proxies.haproxy.runtime import (
    PAYLOAD_CHUNK_BYTES,
    MapEntry,
    map_payloads,
    parse_show_proc,
)

SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
1162            master          5 [failed: 1]   0d00h02m07s     2.6.12-1+deb12u4
# workers
1271            worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
1233            worker          3               0d00h00m43s     2.6.12-1+deb12u4
# programs
"""


def test_parse_show_proc() -> None:
    procs = parse_show_proc(SHOW_PROC)
    assert procs.master.pid == 1162
    assert procs.reloads == 5
    assert procs.failed_reloads == 1
    assert [w.pid for w in procs.workers] == [1271]
    assert [(w.pid, w.reloads) for w in procs.old_workers] == [(1233, 3)]


def test_map_payloads_fit_the_cli_buffer_and_keep_order() -> None:
    entries = [MapEntry(f"/path/{i}", f"backend_{i}") for i in range(3000)]
    chunks = map_payloads(entries)
    assert len(chunks) > 1
    assert all(len(chunk) <= PAYLOAD_CHUNK_BYTES for chunk in chunks)
    lines = "".join(chunks).splitlines()
    assert [MapEntry(*line.split(" ", 1)) for line in lines] == entries


GOOD = """\
global
    default-path config
defaults
    mode http
    option idle-close-on-response
frontend fe
    bind 127.0.0.1:8080
"""


def test_contract_accepts_a_conforming_config() -> None:
    assert contract_problems(Bundle.of(GOOD, {"paths.map": [("/a", "be")]})) == []


def test_contract_rejects_settings_the_manager_owns() -> None:
    cfg = GOOD.replace("global\n", "global\n    stats socket /tmp/x.sock level admin\n")
    problems = contract_problems(Bundle.of(cfg))
    assert any("stats socket" in p for p in problems)


def test_contract_requires_idle_close_on_response_in_defaults() -> None:
    cfg = GOOD.replace("    option idle-close-on-response\n", "")
    assert any("idle-close-on-response" in p for p in contract_problems(Bundle.of(cfg)))


def test_contract_requires_defaults_before_proxies() -> None:
    cfg = "frontend early\n    bind 127.0.0.1:1\n" + GOOD
    assert any("before any defaults" in p for p in contract_problems(Bundle.of(cfg)))


def test_contract_rejects_the_manager_s_own_file_names() -> None:
    problems = contract_problems(Bundle.of(GOOD, {"manager.cfg": []}))
    assert problems == [
        "file name 'manager.cfg' is one of the manager's own files ['admin.sock', "
        "'haproxy.cfg', 'haproxy.log', 'manager-state.json', 'manager.cfg', 'master.sock']"
    ]
