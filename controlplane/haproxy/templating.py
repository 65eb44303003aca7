"""The Jinja environment that writes HAProxy configuration: autoescaping for HAProxy.

Templates live in `controlplane/haproxy/templates/`. Every value a template interpolates
passes through `finalize`, which writes it with `render_text.word` (one configuration word,
quoted when it is not plain), so no value reaches the text unquoted by construction. Two kinds
of values are told apart by their type, never by a template:

- `Raw` text is already quoted configuration text (an ACL term the renderer built from quoted
  parts) and is emitted as it is; see `controlplane.haproxy.render_text` for where it is made.
- a `Runtime` value is one the runtime API can change (a server's address or weight): emitted
  quoted like any value, or as `MASK` when the template is rendered as the *skeleton*
  (`masked=True`), whose hash tells the planner whether two configurations differ in
  anything else.

The filters quote in the other ways HAProxy reads values: `dq` (always double-quoted), `regex`
(an anchored regular expression), `lf` (a literal inside a log-format string, then quoted by
`finalize` as usual) and `comment` (the rest of a comment line). None and booleans are refused:
they mean a template reads the wrong field.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from .render_text import Raw, Runtime, comment, dq, lf_literal, quoted, regex_word

MASK = Raw("<runtime>")
"""What the skeleton holds in place of each runtime value."""


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: object) -> Raw:
    if value is None or isinstance(value, bool):
        raise TypeError(f"a template interpolated {value!r}")
    if isinstance(value, Runtime) and context.get("masked"):
        return MASK
    return quoted(value)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one environment every HAProxy template is rendered with."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("controlplane.haproxy", "templates"),
        autoescape=False,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(dq=dq, regex=regex_word, lf=lf_literal, comment=comment)
    return env


def render_template(name: str, **context: Any) -> tuple[str, str]:
    """Template `name` rendered with `context`: the text, and its skeleton (the same text with
    every runtime value masked)."""
    template = environment().get_template(name)
    return template.render(context, masked=False), template.render(context, masked=True)
