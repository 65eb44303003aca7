"""Property: a hostile string in any string field of the model is refused, or it stays
nothing but its own words in what the proxies are given.

For every string of a config that sets every string field of the model
(`tests/harness/hostile.py`), hypothesis puts hostile text there (line breaks, `#`, quotes,
blanks, backslashes, `%`, `$`, NUL, non-ASCII digits, other Unicode, very long values) and
checks: either the model refuses the config with a ConfigError whose issues are one line
each, never another exception; or the HAProxy render reads, word for word, as the render of
the same config holding stand-ins of the value, but for the value's own words (same files,
same lines, same words elsewhere; every map line reading back as the entry written), and the
Envoy translation builds. Real `haproxy -c` and a real Envoy check a sample of accepted
hostile configs in `tests/integration/test_hostile_input.py`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.envoy import translate
from controlplane.model import Certificate, Config, ConfigError, parse_config, target_issues
from tests.harness.hostile import (
    Slot,
    bundles,
    full_config,
    place,
    slots,
    stand_ins,
    structure_problems,
    uncovered_fields,
)

BASE = full_config()
SLOTS = slots(BASE)

FRAGMENTS = [
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\x00",
    "\x7f",
    "\x85",
    "\u2028",
    "\ud800",
    "#",
    '"',
    "'",
    " ",
    "\\",
    "%",
    "%%",
    "%[src]",
    "$",
    "$HOME",
    "${HOME}",
    "-",
    "-i",
    "--",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "|",
    ";",
    ",",
    "=",
    "&",
    "?",
    "*",
    "+",
    "~",
    "^",
    "`",
    "@",
    "!",
    ":",
    "/",
    ".",
    "\u0661\u0668\u0660\u0668\u0663",
    "é",
    "\u00a0",
    "\U0001f600",
    " if TRUE",
    "\n    http-request deny\n#",
    "(?x)",
    "(a{100}){100}",
]


@st.composite
def hostile_strings(draw: st.DrawFn, benign: str, keep_marker: bool) -> str:
    """Text around `benign` with hostile fragments; with `keep_marker`, only insertions that
    keep it inline PEM (a hostile value never names a file to read)."""
    fragments = st.sampled_from(FRAGMENTS)
    at = draw(st.integers(0, len(benign)))
    choice = draw(st.integers(0, 5 if not keep_marker else 1))
    if choice == 0:
        return benign[:at] + draw(fragments) + benign[at:]
    if choice == 1:
        inserted = "".join(draw(st.lists(fragments, min_size=2, max_size=4)))
        return benign[:at] + inserted + benign[at:]
    if choice == 2:
        return benign + draw(fragments) * draw(st.integers(1, 3000))
    if choice == 3:
        end = draw(st.integers(at, len(benign)))
        return benign[:at] + draw(fragments) + benign[end:]
    if choice == 4:
        return draw(fragments)
    pieces = st.one_of(st.text(max_size=3), fragments)
    return "".join(draw(st.lists(pieces, max_size=12)))


def test_the_hostile_config_sets_every_string_field_of_the_model() -> None:
    assert uncovered_fields(BASE) == set()


def _accepted(data: dict) -> Config | None:
    try:
        return parse_config(data)
    except ConfigError as refused:
        for issue in refused.issues:
            assert issue.message and "\n" not in str(issue), issue
        return None


def refused_or_its_own_words(slot: Slot, value: str) -> None:
    """The property, for one value in one slot."""
    benign = slot.get(BASE)
    config = _accepted(place(BASE, slot, value))
    if config is None:
        return
    for group in config.group_names():
        translate(config, group)
    if target_issues(config, "haproxy"):
        return
    for first, second in [*stand_ins(value, benign), (benign, benign)]:
        one, two = _accepted(place(BASE, slot, first)), _accepted(place(BASE, slot, second))
        if one is not None and two is not None and not target_issues(one, "haproxy"):
            break
    assert one is not None and two is not None
    problems = structure_problems(bundles(config), bundles(one), bundles(two))
    assert not problems, f"{value!r} in {slot.label}:\n" + "\n".join(problems[:10])


SWEPT = ["\n", "\r", "\t", "\x00", "\x85", "\u2028", "\ud800", "#", '"', "'", " ", "\\", "%"]
SWEPT += ["$HOME", "${HOME}", "-i", "{", "}", "|", ";", ",", "=", "\u0661", "é"]


@pytest.mark.parametrize("slot", SLOTS, ids=[s.label for s in SLOTS])
def test_each_hostile_character_is_refused_or_stays_its_own_words(slot: Slot) -> None:
    benign = slot.get(BASE)
    middle = len(benign) // 2 if slot.model is not Certificate else len(benign) - 1
    for fragment in SWEPT:
        refused_or_its_own_words(slot, benign[:middle] + fragment + benign[middle:])
        if slot.model is not Certificate:
            refused_or_its_own_words(slot, fragment + benign)


@pytest.mark.parametrize("slot", SLOTS, ids=[s.label for s in SLOTS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_strings_are_refused_or_stay_their_own_words(
    slot: Slot, data: st.DataObject
) -> None:
    benign = slot.get(BASE)
    value = data.draw(hostile_strings(benign, keep_marker=slot.model is Certificate))
    refused_or_its_own_words(slot, value)
