"""The regexes Envoy's trigger matcher looks for phrases with: together they find every phrase
of a list however long, each within the budget of RE2 instructions, and a value is scanned
once for what one regex can hold."""

import re

from controlplane.envoy.features import firewall_triggers
from controlplane.envoy.features.firewall_triggers import REGEX_BUDGET
from controlplane.firewall.triggers import Watch


def _regexes(watch: Watch, gate: int | None = None) -> list[str]:
    alternatives = firewall_triggers._alternatives(watch)
    if gate is not None:
        alternatives.append(firewall_triggers._gate(gate))
    return [m.safe_regex.regex for m in firewall_triggers._packed(alternatives)]


def _found(regexes: list[str], value: str) -> bool:
    # Python reads this subset of RE2 alike: (?s), (?i:...), \xHH, a whole-value match
    return any(re.fullmatch(regex, value) for regex in regexes)


def test_a_short_list_and_its_changing_characters_are_one_regex() -> None:
    regexes = _regexes(Watch(phrases=("sqlmap", "nikto", "%"), blanks=True))
    assert len(regexes) == 1
    assert _found(regexes, "Mozilla/5.0 SQLMap/1.7")
    assert _found(regexes, "a\tb")
    assert not _found(regexes, "Mozilla/5.0")


def test_a_long_list_takes_several_regexes_that_find_each_of_its_phrases() -> None:
    phrases = tuple(f"scanner-{i:04d}" for i in range(600))
    regexes = _regexes(Watch(phrases=phrases))
    assert len(regexes) > 1
    for phrase in phrases:
        assert _found(regexes, f"User-Agent {phrase.upper()} /1.0")
    assert not _found(regexes, "scanner-x")


def test_every_regex_is_within_the_budget() -> None:
    phrases = (*("k" * 250 + str(i) for i in range(40)), "ü" * 256)
    for group in firewall_triggers._containing(phrases):
        assert group.weight <= REGEX_BUDGET
    for alternative in firewall_triggers._alternatives(Watch(phrases=phrases)):
        assert alternative.weight <= REGEX_BUDGET


def test_a_phrase_longer_than_a_regex_holds_is_looked_for_by_its_beginning() -> None:
    phrase = "ks" * 128
    regexes = _regexes(Watch(phrases=(phrase,)))
    assert _found(regexes, f"say {phrase}!")
    assert _found(regexes, phrase[:250])  # fires: the core then tells
    assert not _found(regexes, phrase[:200])


def test_a_gate_shares_the_watch_regex_when_both_fit() -> None:
    regexes = _regexes(Watch(phrases=("../",)), gate=50)
    assert len(regexes) == 1
    assert _found(regexes, "/" + "a" * 49)
    assert _found(regexes, "/a/../b")
    assert not _found(regexes, "/" + "a" * 40)
