"""The feature hook: a feature's rules land at its phases' defined points, its per-route values
in its own maps, and the features the compiler ships are registered in one place."""

from __future__ import annotations

from collections.abc import Iterator

import jinja2
import pytest

from controlplane.haproxy import features, render
from controlplane.haproxy.features.base import PHASES, Feature
from controlplane.haproxy.scopes import BackendScope, GlobalScope, ListenerScope
from controlplane.haproxy.templating import environment
from controlplane.model import load_file
from tests.golden.conftest import GOLDEN_DIR

PROBE_TEMPLATES = {
    f"features/probe/{phase}.j2": f"    # probe {phase} {{{{ data }}}}\n"
    for phase in ("global_section", "frontend", "request", "response", "backend")
} | {
    "features/probe/sections.j2": "backend probe.{{ data }}\n    stick-table type string size 1k\n"
}


class Probe(Feature):
    """Takes part in every phase; its per-route value is the route id's length."""

    name = "probe"

    def global_section(self, scope: GlobalScope) -> str:
        return scope.files.add("probe", "lua", f"-- {len(scope.config.listeners)} listeners\n")

    def frontend(self, scope: ListenerScope) -> str:
        scope.files.add(f"{scope.listener.name}.probe", "acl", f"{scope.listener.address}\n")
        return scope.listener.name

    def request(self, scope: ListenerScope) -> str | None:
        for entry in scope.routes:
            scope.maps.add("probe", entry.id, str(len(entry.id)))
        return scope.maps.name("probe") if scope.routes else None

    def response(self, scope: ListenerScope) -> str | None:
        return scope.listener.name if scope.routes else None

    def sections(self, scope: ListenerScope) -> str:
        return scope.listener.name

    def backend(self, scope: BackendScope) -> str:
        return scope.name


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    env = environment()
    loader = env.loader
    assert loader is not None
    env.loader = jinja2.ChoiceLoader([jinja2.DictLoader(PROBE_TEMPLATES), loader])
    monkeypatch.setattr(render, "FEATURES", (*features.FEATURES, Probe()))
    try:
        yield
    finally:
        env.loader = loader


def lines_of(cfg: str) -> list[str]:
    return [line.strip() for line in cfg.splitlines()]


def test_each_phase_lands_at_its_point(probed: None) -> None:
    config = load_file(GOLDEN_DIR / "headers.yaml")
    bundle = render.render(config, "default")
    lines = lines_of(bundle.cfg)
    at = lines.index
    shipped = at("tcp-request connection reject if { fe_conn gt 10000 }")
    assert at("bind 127.0.0.1:10080") < shipped < at("# probe frontend web")
    decided = at("http-request return status 404 if !{ var(txn.route) -m found }")
    choice = at("use_backend %[var(txn.be)] if { var(txn.be) -m found }")
    request = at("# probe request web.probe.map")
    assert decided < at("# request header mutations of routes: remove, set, add") < request < choice
    response = at("# probe response web")
    assert choice < at("# response header mutations of routes: remove, set, add") < response
    for backend in bundle.servers:
        probe = at(f"# probe backend {backend}")
        assert lines[probe - 1].startswith(("default-server", "http-request return status 503"))
        assert lines[probe + 1].startswith("server ")
    assert at("backend probe.web") > max(at(f"backend {b}") for b in bundle.servers)


def test_per_route_values_go_in_the_feature_s_own_map(probed: None) -> None:
    bundle = render.render(load_file(GOLDEN_DIR / "headers.yaml"), "default")
    entries = dict(bundle.map_entries["web.probe.map"])
    assert entries and all(value == str(len(key)) for key, value in entries.items())


def test_tcp_listeners_take_frontend_and_sections_phases(probed: None) -> None:
    bundle = render.render(load_file(GOLDEN_DIR / "l4-tcp-tls.yaml"), "default")
    lines = lines_of(bundle.cfg)
    assert lines.index("# probe frontend tcp") == lines.index("bind 127.0.0.1:10090") + 2
    assert "backend probe.passthrough" in lines
    assert not any(line.startswith(("# probe request", "# probe response")) for line in lines)


def test_the_global_phase_lands_in_the_global_section_once(probed: None) -> None:
    bundle = render.render(load_file(GOLDEN_DIR / "headers.yaml"), "default")
    lines = lines_of(bundle.cfg)
    probes = [line for line in lines if line.startswith("# probe global_section")]
    assert len(probes) == 1
    assert lines.index("global") < lines.index(probes[0]) < lines.index("defaults")


def test_features_add_files_named_by_their_content(probed: None) -> None:
    config = load_file(GOLDEN_DIR / "headers.yaml")
    bundle = render.render(config, "default")
    lua = next(name for name in bundle.files if name.startswith("probe."))
    assert f"# probe global_section {lua}" in lines_of(bundle.cfg)
    assert bundle.files[lua] == f"-- {len(config.listeners)} listeners\n"
    acl = next(name for name in bundle.files if name.startswith("web.probe."))
    assert bundle.files[acl] == "127.0.0.1:10080\n"
    moved = config.model_copy(
        update={"listeners": [config.listeners[0].model_copy(update={"address": "127.0.0.1:1"})]}
    )
    other = render.render(moved, "default")
    assert acl not in other.files
    assert any(name.startswith("web.probe.") for name in other.files)


def test_the_shipped_features_are_registered_in_the_order_their_rules_run() -> None:
    assert [f.name for f in features.FEATURES] == [
        "firewall",
        "connection_limits",
        "rate_limits",
        "answers",
        "prefix_rewrite",
        "headers",
    ]


def test_every_shipped_feature_has_a_template_for_each_phase_it_takes_part_in() -> None:
    names = set(environment().list_templates())
    for feature in features.FEATURES:
        for phase in PHASES:
            overridden = getattr(type(feature), phase) is not getattr(Feature, phase)
            assert overridden == (f"features/{feature.name}/{phase}.j2" in names), (
                feature.name,
                phase,
            )
