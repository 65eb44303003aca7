"""The change classifier: which bundle differences go through the runtime API."""

from controlplane.haproxy.bundle import Bundle
from controlplane.proxies.haproxy.reload_plan import (
    MapUpdate,
    ServerUpdate,
    parse_ip_port,
    plan_change,
)

BASE = """\
global
    default-path config

defaults
    mode http
    option idle-close-on-response

frontend fe
    bind 127.0.0.1:8080
    http-request set-header X-Tag a
    use_backend %[path,map_beg(paths.map,be_a)]

backend be_a
    balance roundrobin
    server a1 127.0.0.1:9001 weight 1 check
    server a2 127.0.0.1:9002 weight 1

backend be_b
    server b1 127.0.0.1:9003 weight 5
"""
MAPS = {"paths.map": "/b be_b\n"}


def bundle(cfg: str = BASE, maps: dict[str, str] | None = None) -> Bundle:
    return Bundle.of(cfg, MAPS if maps is None else maps)


def test_identical_bundles_need_nothing() -> None:
    plan = plan_change(bundle(), bundle())
    assert not plan.reload
    assert plan.servers == () and plan.maps == ()


def test_address_and_port_change_is_runtime() -> None:
    new = BASE.replace("127.0.0.1:9002", "127.0.0.2:9102")
    plan = plan_change(bundle(), bundle(new))
    assert not plan.reload
    assert plan.servers == (ServerUpdate("be_a", "a2", "127.0.0.2", 9102, None),)
    assert "be_a/a2" in plan.reason


def test_weight_change_is_runtime() -> None:
    new = BASE.replace("server b1 127.0.0.1:9003 weight 5", "server b1 127.0.0.1:9003 weight 0")
    plan = plan_change(bundle(), bundle(new))
    assert not plan.reload
    assert plan.servers == (ServerUpdate("be_b", "b1", None, None, 0),)


def test_address_and_weight_together() -> None:
    new = BASE.replace("127.0.0.1:9001 weight 1", "[::1]:9005 weight 7")
    plan = plan_change(bundle(), bundle(new))
    assert plan.servers == (ServerUpdate("be_a", "a1", "::1", 9005, 7),)


def test_map_content_change_is_runtime() -> None:
    plan = plan_change(bundle(), bundle(maps={"paths.map": "/b be_b\n/c be_a\n"}))
    assert not plan.reload
    assert plan.maps == (MapUpdate("paths.map", "/b be_b\n/c be_a\n"),)


def test_other_config_change_needs_reload() -> None:
    new = BASE.replace("X-Tag a", "X-Tag b")
    plan = plan_change(bundle(), bundle(new))
    assert plan.reload
    assert "X-Tag" in plan.reason


def test_added_server_needs_reload() -> None:
    new = BASE.replace("weight 5\n", "weight 5\n    server b2 127.0.0.1:9004 weight 5\n")
    assert plan_change(bundle(), bundle(new)).reload


def test_renamed_server_needs_reload() -> None:
    new = BASE.replace("server a2 ", "server a3 ")
    assert plan_change(bundle(), bundle(new)).reload


def test_changed_server_option_needs_reload() -> None:
    new = BASE.replace("weight 1 check", "weight 1")
    assert plan_change(bundle(), bundle(new)).reload


def test_host_name_address_needs_reload() -> None:
    new = BASE.replace("127.0.0.1:9002", "backend.internal:9002")
    plan = plan_change(bundle(), bundle(new))
    assert plan.reload
    assert "be_a/a2" in plan.reason


def test_removed_weight_needs_reload() -> None:
    new = BASE.replace("server b1 127.0.0.1:9003 weight 5", "server b1 127.0.0.1:9003")
    assert plan_change(bundle(), bundle(new)).reload


def test_added_map_file_needs_reload() -> None:
    maps = {**MAPS, "hosts.map": "example.com be_a\n"}
    plan = plan_change(bundle(), bundle(maps=maps))
    assert plan.reload
    assert "hosts.map" in plan.reason


def test_servers_outside_backends_are_not_runtime() -> None:
    peers = BASE + "\npeers mesh\n    server p1 127.0.0.1:7000\n"
    moved = peers.replace("127.0.0.1:7000", "127.0.0.1:7001")
    assert plan_change(bundle(peers), bundle(moved)).reload


def test_listen_sections_hold_runtime_servers() -> None:
    cfg = BASE + "\nlisten tcp_in\n    bind 127.0.0.1:7000\n    server t1 127.0.0.1:7001 weight 2\n"
    new = cfg.replace("7001 weight 2", "7002 weight 3")
    plan = plan_change(bundle(cfg), bundle(new))
    assert plan.servers == (ServerUpdate("tcp_in", "t1", "127.0.0.1", 7002, 3),)


def test_whitespace_change_needs_reload() -> None:
    assert plan_change(bundle(), bundle(BASE.replace("    balance", "  balance"))).reload


def test_parse_ip_port() -> None:
    assert parse_ip_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_ip_port("[::1]:80") == ("::1", 80)
    assert parse_ip_port("localhost:80") is None
    assert parse_ip_port("127.0.0.1") is None
    assert parse_ip_port("127.0.0.1:+10") is None
    assert parse_ip_port("[::1%lo]:80") is None
    assert parse_ip_port("unix@/tmp/x.sock") is None
