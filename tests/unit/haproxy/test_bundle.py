"""The bundle: well-formed however it is made, versioned by its content, and its wire format."""

import json

import pytest

from controlplane.haproxy.bundle import Bundle, BundleError, Server
from controlplane.haproxy.render import render
from controlplane.model import load_file
from tests.golden.conftest import GOLDEN_DIR

ROUTING = load_file(GOLDEN_DIR / "routing.yaml")


def test_the_version_is_a_content_hash_of_everything_in_the_bundle() -> None:
    a = Bundle.of("cfg", {"a.map": [("x", "y")]})
    assert a.version == Bundle.of("cfg", {"a.map": [("x", "y")]}).version
    assert a.version != Bundle.of("cfg", {"a.map": [("x", "z")]}).version
    assert a.version != Bundle.of("cfg", {"b.map": [("x", "y")]}).version
    assert a.version != Bundle.of("cfg", {"a.map": [("x", "y")]}, {"c.pem": ""}).version
    assert a.version != Bundle.of("cfg", {"a.map": [("x", "y")]}, masked_cfg="other").version
    server = Server("ep1", "127.0.0.1", 80, 1)
    assert a.version != Bundle.of("cfg", {"a.map": [("x", "y")]}, servers={"be": (server,)}).version
    assert Bundle.of("ab").version != Bundle.of("a", {"b": []}).version


def test_map_text_is_derived_from_the_entries() -> None:
    bundle = Bundle.of("cfg", {"a.map": [("/api", "D1|0|site/api|api"), ("x", "a value")]})
    assert bundle.maps["a.map"] == "/api D1|0|site/api|api\nx a value\n"


@pytest.mark.parametrize(
    "maps, files",
    [
        ({"../x.map": []}, {}),
        ({}, {"sub/x.pem": ""}),
        ({"haproxy.cfg": []}, {}),
        ({".hidden": []}, {}),
        ({"a.map": []}, {"a.map": ""}),
        ({"a.map": [("two words", "v")]}, {}),
        ({"a.map": [("#comment", "v")]}, {}),
        ({"a.map": [("k", "line\nbreak")]}, {}),
    ],
)
def test_file_names_and_map_entries_are_checked_however_a_bundle_is_made(
    maps: dict[str, list[tuple[str, str]]], files: dict[str, str]
) -> None:
    with pytest.raises(BundleError):
        Bundle.of("cfg", maps, files)


@pytest.mark.parametrize(
    "backend, server",
    [
        ("be;shutdown", Server("s1", "127.0.0.1", 80, 1)),
        ("be", Server("s1 x", "127.0.0.1", 80, 1)),
        ("be", Server("s1", "127.0.0.1 port 1", 80, 1)),
        ("be", Server("s1", "bad host", 80, 1)),
        ("be", Server("s1", "127.0.0.1", 0, 1)),
        ("be", Server("s1", "127.0.0.1", 65536, 1)),
        ("be", Server("s1", "127.0.0.1", 80, 257)),
        ("be", Server("s1", "127.0.0.1", 80, -1)),
        ("be", Server("s1", "127.0.0.1", True, 1)),
    ],
)
def test_the_runtime_table_holds_only_what_runtime_api_commands_can_carry(
    backend: str, server: Server
) -> None:
    with pytest.raises(BundleError):
        Bundle.of("cfg", servers={backend: (server,)})


def test_a_rendered_bundle_goes_over_the_wire_and_back_unchanged() -> None:
    bundle = render(ROUTING, "default")
    received, envelope = Bundle.from_json(bundle.to_json(revision=7), envelope=("revision",))
    assert received == bundle and received.version == bundle.version
    assert received.maps == bundle.maps and received.servers == bundle.servers
    assert envelope == {"revision": 7}
    data = json.loads(bundle.to_json())
    assert set(data) == {"version", "skeleton", "cfg", "maps", "files", "servers"}
    assert data["servers"]["api"][0] == {
        "name": "ep1",
        "host": "127.0.0.1",
        "port": 18081,
        "weight": 1,
    }


def _changed(text: str, **fields: object) -> str:
    return json.dumps({**json.loads(text), **fields})


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"version": "0123456789abcdef"}, "does not match its version"),
        ({"cfg": "global\n"}, "does not match its version"),
        ({"maps": {"../x.map": []}}, "plain file name"),
        ({"maps": {"a.map": [["k"]]}}, "[key, value]"),
        ({"servers": {"be": [{"name": "s1", "host": "h;x", "port": 1, "weight": 1}]}}, "host"),
        ({"servers": {"be": [{"name": "s1"}]}}, "fields"),
        ({"skeleton": "not a hash"}, "skeleton"),
        ({"extra": 1}, "unknown ['extra']"),
        ({"revision": "7"}, "revision must be an integer"),
    ],
)
def test_from_json_refuses_what_is_not_a_well_formed_bundle(
    change: dict[str, object], problem: str
) -> None:
    text = _changed(render(ROUTING, "default").to_json(revision=7), **change)
    with pytest.raises(BundleError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Bundle.from_json(text, envelope=("revision",))


def test_from_json_refuses_what_is_not_json() -> None:
    for text in (b"\xff", "[1]", "{"):
        with pytest.raises(BundleError):
            Bundle.from_json(text)
