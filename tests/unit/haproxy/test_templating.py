"""Autoescaping for HAProxy: every value a template interpolates is one configuration word with
exactly its own text, unless it is marked Raw; runtime values are masked in the skeleton."""

import ast
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.haproxy import render_text
from controlplane.haproxy.render_text import Raw, Runtime, dq
from controlplane.haproxy.templating import MASK, environment
from tests.harness.haproxy_text import words

PACKAGE = Path(render_text.__file__).parent
HOSTILE = ["a b", "x\n    http-request deny", "#c", '"q"', "'s'", "\\", "$HOME", "${X}", "{", "}"]
HOSTILE += ["-i", "", "\x00", "é", " if TRUE", "%[src]"]


def rendered(source: str, **values: object) -> str:
    return environment().from_string(source).render(values)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_interpolated_without_the_raw_marker_is_one_word_of_its_own_text(
    value: str,
) -> None:
    line = rendered("http-request set-header x-a {{ value }} if { always_true }", value=value)
    assert "\n" not in line
    assert words(line) == [
        "http-request",
        "set-header",
        "x-a",
        value,
        "if",
        "{",
        "always_true",
        "}",
    ]


@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_any_text_interpolated_is_one_word_of_its_own_text(value: str) -> None:
    assert words(rendered("use_backend {{ value }}", value=value)) == ["use_backend", value]


def test_a_value_built_in_a_template_from_parts_is_quoted_as_a_whole() -> None:
    line = rendered('set-var(txn.vh) {{ "str(" ~ name ~ ")" }}', name="a b")
    assert words(line) == ["set-var(txn.vh)", "str(a b)"]


def test_raw_text_is_emitted_as_it_is_and_raw_formatting_quotes_its_values() -> None:
    term = Raw("{ %s -m str %s }") % ("req.fhdr(x-a)", "a b")
    assert rendered("use_backend be if {{ term }}", term=term) == (
        'use_backend be if { req.fhdr(x-a) -m str "a b" }'
    )
    assert Raw(" ").join(["a", dq("b c"), "d e"]) == 'a "b c" "d e"'


def test_filters_quote_the_other_ways_haproxy_reads_values() -> None:
    assert rendered("{{ v | dq }}", v="plain") == '"plain"'
    assert rendered("{{ v | regex }}", v="a b") == "'^(?:a b)$'"
    assert rendered("{{ v | lf }}", v="100% sure") == '"100%% sure"'
    assert rendered("# {{ v | comment }}", v="a b\nc") == "# a b\\nc"


def test_runtime_values_are_quoted_and_masked_in_the_skeleton() -> None:
    source = "server ep1 {{ address }} weight {{ weight }}"
    values = {"address": Runtime("127.0.0.1:80"), "weight": Runtime("3")}
    assert rendered(source, **values) == "server ep1 127.0.0.1:80 weight 3"
    assert rendered(source, **values, masked=True) == f"server ep1 {MASK} weight {MASK}"


@pytest.mark.parametrize("value", [None, True, False])
def test_none_and_booleans_are_refused_they_mean_a_template_reads_the_wrong_field(
    value: object,
) -> None:
    with pytest.raises(TypeError):
        rendered("x {{ value }}", value=value)


def test_raw_is_made_only_from_string_literals_outside_the_quoting_module() -> None:
    calls = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "render_text.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                literal = len(node.args) == 1 and isinstance(node.args[0], ast.Constant)
                if node.func.id == "Raw" and not literal:
                    calls.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert calls == []


def test_every_template_the_package_ships_compiles() -> None:
    env = environment()
    for name in env.list_templates():
        env.get_template(name)


def test_every_template_ships_in_the_wheel() -> None:
    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["controlplane"]
    for path in (PACKAGE / "templates").rglob("*"):
        if path.is_file():
            relative = PurePosixPath(path.relative_to(PACKAGE.parent).as_posix())
            fits = [p for p in patterns if len(PurePosixPath(p).parts) == len(relative.parts)]
            assert any(relative.match(p) for p in fits), f"{relative} is not package data"
