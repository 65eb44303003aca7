"""PlaneExplainer: what a change means for each plane's proxies of each group."""

from __future__ import annotations

from controlplane.fleet import EnvoyPlane, HAProxyPlane, PlaneExplainer
from controlplane.xds.cache import SnapshotCache

from .configs import config


def explainer() -> PlaneExplainer:
    return PlaneExplainer([EnvoyPlane(SnapshotCache()), HAProxyPlane()])


def test_a_route_change_changes_a_route_configuration_and_is_a_runtime_update() -> None:
    detail = explainer().explain(config(), config(api=("v2",)))

    assert detail["envoy"] == {"groups": {"default": {"RouteConfiguration": {"changed": ["web0"]}}}}
    haproxy = detail["haproxy"]["groups"]["default"]
    assert haproxy["action"] == "runtime" and "map" in haproxy["reason"]


def test_a_new_listener_is_added_for_envoy_and_reloads_haproxy() -> None:
    detail = explainer().explain(config(), config(api=("api", "api")))

    assert detail["envoy"]["groups"]["default"] == {
        "Listener": {"added": ["web1"]},
        "RouteConfiguration": {"added": ["web1"]},
    }
    assert detail["haproxy"]["groups"]["default"]["action"] == "reload"


def test_groups_appearing_unchanged_and_removed() -> None:
    before = config(api=("api", "api"), groups={"edge": [0], "inner": [1]})
    after = config(api=("api", "api"), groups={"edge": [0], "tier2": [1]})

    detail = explainer().explain(before, after)

    assert detail["envoy"]["groups"]["edge"] == {}
    assert detail["envoy"]["groups"]["inner"]["Listener"] == {"removed": ["web1"]}
    assert detail["envoy"]["groups"]["tier2"]["Listener"] == {"added": ["web1"]}
    haproxy = {g: plan["action"] for g, plan in detail["haproxy"]["groups"].items()}
    assert haproxy == {"edge": "unchanged", "inner": "removed", "tier2": "start"}


def test_a_first_config_adds_everything_and_only_served_kinds_are_explained() -> None:
    detail = PlaneExplainer([EnvoyPlane(SnapshotCache())]).explain(None, config())

    assert set(detail) == {"envoy"}
    assert detail["envoy"]["groups"]["default"]["Cluster"] == {"added": ["api", "v2", "web"]}
    assert explainer().explain(None, config())["haproxy"]["groups"] == {
        "default": {"action": "start", "reason": "new group"}
    }
