"""When the shared core must see a request: the native checks a proxy makes before it runs
the firewall's L7 rules, so that a request no rule can match never pays for the Lua.

`triggers(firewall)` over-approximates the core: every request the core would name a rule
for fires a trigger (the core runs and gives the verdict), and most requests that fire none
could not match any rule (they go on without it). The verdict therefore stays the core's,
the same on both proxies; a trigger only decides whether it is asked. A request fires when:

- `methods`: its method is not one of them;
- `target`: its request target (path and query as sent) is what the `Watch` looks for;
- `headers`: a value of the header of that name is what its `Watch` looks for;
- `target_longer`: its target has more bytes than that;
- `headers_longer`: its headers' names and values add up to more than that less 2 bytes (as
  they do when one header's name, `: ` and value are longer than that);
- `content_length_above`: its `Content-Length` is above that;
- `host_missing`: it has no Host, an empty one, or several;
- `always`: every request (a rule the proxies cannot prefilter: a regex on the path, a
  rule on the body, one on a header whose name is not a plain field name).

Why each rule's triggers cover it, given what the transforms do: a transform other than
`lowercase` changes a value only if the value holds one of its *changing* characters (`%`
or `+` for `url_decode`, `&` for `html_entity_decode`, a blank for `compress_whitespace`),
and `lowercase` only changes ASCII case, which triggers ignore. So a value without those
characters reaches the matcher as it was sent, up to case, and a phrase found in it is found
in what was sent. A rule on the path or query looks at the target, which holds both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..model import Firewall
from ..model.firewall import Rule, Transform
from ..model.types import HEADER_NAME_PATTERN
from .policy import literal_words

CHANGING: Mapping[Transform, tuple[str, ...]] = {
    "url_decode": ("%", "+"),
    "html_entity_decode": ("&",),
    "compress_whitespace": (),
    "lowercase": (),
}
"""What a value must contain for a transform to change more than its ASCII case
(`compress_whitespace`: a blank, watched by `Watch.blanks`)."""

BLANKS = " \t\n\v\f\r"
"""The characters `compress_whitespace` reads as blanks."""


@dataclass(frozen=True)
class Watch:
    """What a value is looked at for: it fires when it contains one of `phrases` (ASCII case
    ignored), or any of `BLANKS` with `blanks`; with `present`, whenever it is there."""

    phrases: tuple[str, ...] = ()
    blanks: bool = False
    present: bool = False


@dataclass(frozen=True)
class Triggers:
    """The requests the core must see for one firewall (the module's docstring)."""

    always: bool = False
    methods: tuple[str, ...] | None = None
    target: Watch = Watch()
    headers: tuple[tuple[str, Watch], ...] = ()
    """(lower-case header name, what its values are watched for), sorted by name."""
    target_longer: int | None = None
    headers_longer: int | None = None
    content_length_above: int | None = None
    host_missing: bool = False


@dataclass
class _Watching:
    phrases: set[str] = field(default_factory=set)
    blanks: bool = False
    present: bool = False

    def add(self, phrases: Iterable[str] | None, transforms: Iterable[Transform] = ()) -> None:
        """Watch for `phrases` after `transforms` (None: any value)."""
        if phrases is None:
            self.present = True
            return
        transforms = list(transforms)
        self.phrases.update(phrases)
        self.phrases.update(char for transform in transforms for char in CHANGING[transform])
        self.blanks = self.blanks or "compress_whitespace" in transforms

    def watch(self) -> Watch:
        if self.present:
            return Watch(present=True)
        return Watch(tuple(sorted(self.phrases)), self.blanks)


@dataclass
class _Collect:
    always: bool = False
    target: _Watching = field(default_factory=_Watching)
    headers: dict[str, _Watching] = field(default_factory=dict)

    def header(self, name: str) -> _Watching:
        if _HEADER_NAME.fullmatch(name) is None:
            self.always = True
        return self.headers.setdefault(name.lower(), _Watching())


_HEADER_NAME = re.compile(HEADER_NAME_PATTERN.removeprefix("^").removesuffix("$"))


def _rule(rule: Rule, found: _Collect) -> None:
    words = literal_words(rule.regex) if rule.regex is not None else rule.phrases
    if rule.target == "header":
        found.header(str(rule.field)).add(words, rule.transforms)
    elif rule.target == "cookie":
        found.header("cookie").add(words, rule.transforms)
    elif rule.target == "body" or (rule.target == "path" and words is None):
        found.always = True
    elif words is None:
        found.target.add(["?"])
    else:
        found.target.add(words, rule.transforms)


def triggers(firewall: Firewall) -> Triggers:
    """The triggers of `firewall`'s L7 rules (the module's docstring)."""
    found = _Collect()
    for agent in firewall.user_agents:
        words = [agent.contains] if agent.contains is not None else literal_words(str(agent.regex))
        found.header("user-agent").add(words)
    if firewall.file_extensions:
        found.target.add([f".{ext}" for ext in firewall.file_extensions], ["url_decode"])
    if firewall.protocol:
        found.target.add(["%"])
    for rule in firewall.rules:
        _rule(rule, found)
    sizes = firewall.max_sizes
    return Triggers(
        always=found.always,
        methods=tuple(firewall.methods) if firewall.methods else None,
        target=found.target.watch(),
        headers=tuple((name, found.headers[name].watch()) for name in sorted(found.headers)),
        target_longer=sizes.url,
        headers_longer=sizes.header,
        content_length_above=sizes.body,
        host_missing=firewall.protocol,
    )
