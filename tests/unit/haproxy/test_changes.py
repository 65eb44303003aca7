"""The change planner: which differences between rendered bundles go through the runtime API.

Bundles come from the renderer, which says what the runtime API may change (its runtime table
and skeleton); the planner compares those, never the text.
"""

from typing import Any

from controlplane.haproxy.bundle import Bundle, Server
from controlplane.haproxy.render import render
from controlplane.model import parse_config
from controlplane.proxies.haproxy.reload_plan import MapUpdate, ServerUpdate, plan_change


def rendered(
    endpoints: tuple[str, ...] = ("127.0.0.1:9001", "127.0.0.1:9002"),
    weights: tuple[int, ...] = (1, 1),
    prefix: str = "/api",
    timeout: str = "15s",
    route_timeout: str = "30s",
) -> Bundle:
    """A listener routing `prefix` (with a route timeout: a second backend of the cluster) and
    everything else to cluster `app` of `endpoints`."""
    app: dict[str, Any] = {
        "name": "app",
        "endpoints": [{"address": a, "weight": w} for a, w in zip(endpoints, weights, strict=True)],
    }
    routes = [
        {
            "match": {"path": {"prefix": prefix}},
            "backends": [{"cluster": "app"}],
            "timeout": route_timeout,
        },
        {"backends": [{"cluster": "app"}], "timeout": timeout},
    ]
    listener = {
        "name": "web",
        "address": "127.0.0.1:8080",
        "protocol": "http",
        "virtual_hosts": [{"name": "site", "domains": ["*"], "routes": routes}],
    }
    return render(parse_config({"listeners": [listener], "clusters": [app]}), "default")


def test_identical_bundles_need_nothing() -> None:
    plan = plan_change(rendered(), rendered())
    assert (plan.reload, plan.servers, plan.maps) == (False, (), ())


def test_the_runtime_table_holds_every_backend_of_a_cluster() -> None:
    bundle = rendered()
    assert set(bundle.servers) == {"app", "app:t30s"}
    assert bundle.servers["app"] == (
        Server("ep1", "127.0.0.1", 9001, 1),
        Server("ep2", "127.0.0.1", 9002, 1),
    )


def test_an_address_change_reloads_and_retires_the_old_workers() -> None:
    """HAProxy 2.6 keeps reusing idle connections to a server's old address after
    `set server addr`: a moved server is a reload, done once the old workers are gone."""
    plan = plan_change(rendered(), rendered(endpoints=("127.0.0.1:9001", "127.0.0.2:9102")))
    assert (plan.reload, plan.retire, plan.servers) == (True, True, ())
    assert "app/ep2 127.0.0.1:9002 -> 127.0.0.2:9102" in plan.reason
    assert "app:t30s/ep2 127.0.0.1:9002 -> 127.0.0.2:9102" in plan.reason


def test_weight_change_is_runtime() -> None:
    plan = plan_change(rendered(), rendered(weights=(1, 7)))
    assert (plan.reload, plan.retire) == (False, False)
    assert ServerUpdate("app", "ep2", 7) in plan.servers
    assert "app/ep2 weight 7" in plan.reason


def test_a_removed_server_retires_the_old_workers_and_an_added_one_does_not() -> None:
    three = rendered(
        endpoints=("127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"), weights=(1, 1, 1)
    )
    assert (plan_change(rendered(), three).reload, plan_change(rendered(), three).retire) == (
        True,
        False,
    )
    removed = plan_change(three, rendered())
    assert (removed.reload, removed.retire) == (True, True)


def test_map_content_change_is_runtime() -> None:
    plan = plan_change(rendered(), rendered(prefix="/v2"))
    assert not plan.reload
    [update] = plan.maps
    assert update == MapUpdate(
        "web.prefix.map", rendered(prefix="/v2").map_entries["web.prefix.map"]
    )
    assert ("/v2/", "D2|0|site/_0|app:t30s") in update.entries
    assert "web.prefix.map" in plan.reason


def test_other_config_change_needs_reload_and_says_where() -> None:
    before = rendered()
    plan = plan_change(before, rendered(route_timeout="45s"))
    line = next(n for n, text in enumerate(before.cfg.splitlines(), 1) if "with t30s" in text)
    assert plan.reload
    assert f"line {line}:" in plan.reason and "for routes with t45s" in plan.reason


def test_host_name_address_needs_reload() -> None:
    names = rendered(endpoints=("a.internal:9001", "127.0.0.1:9002"))
    assert plan_change(rendered(), names).reload
    other = rendered(endpoints=("b.internal:9001", "127.0.0.1:9002"))
    plan = plan_change(names, other)
    assert (plan.reload, plan.retire) == (True, True)
    assert "app/ep1 a.internal:9001 -> b.internal:9001" in plan.reason


def test_added_map_file_needs_reload() -> None:
    before = rendered()
    maps = {**before.map_entries, "web.extra.map": (("k", "v"),)}
    plan = plan_change(before, Bundle.of(before.cfg, maps, before.files, before.servers))
    assert plan.reload


def test_a_bundle_made_from_text_alone_reloads_on_any_change_of_its_text() -> None:
    cfg = "backend be\n    server s1 127.0.0.1:9001 weight 1\n"
    moved = cfg.replace("9001", "9002")
    assert plan_change(Bundle.of(cfg), Bundle.of(moved)).reload
    assert not plan_change(
        Bundle.of(cfg, {"a.map": [("k", "1")]}), Bundle.of(cfg, {"a.map": [("k", "2")]})
    ).reload


def test_tables_that_disagree_on_servers_need_reload() -> None:
    before = rendered()
    renamed = {"app": (Server("x1", "127.0.0.1", 9001, 1),), "app:t30s": before.servers["app:t30s"]}
    same_text = Bundle(before.cfg, before.map_entries, before.files, renamed, before.skeleton)
    assert plan_change(before, same_text).reload
