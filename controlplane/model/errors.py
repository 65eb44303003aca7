"""Validation problems, each tied to the path of the field it is about."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

PathPart = str | int


_PLAIN_PART = re.compile(r"[A-Za-z0-9_.\[\]-]+", re.ASCII)


def format_path(path: Sequence[PathPart]) -> str:
    """`('listeners', 0, 'address')` → `listeners[0].address`; a key that is not plain text
    (a hostile mapping key) is shown as a JSON string: `set["x\\ny"]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_PART.fullmatch(part):
            text += f"[{json.dumps(part)}]"
        else:
            text += f".{part}" if text else part
    return text or "(config)"


_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Issue:
    """One problem with a configuration: where it is and what is wrong, on one line (control
    characters in the message, say from a value it quotes, are shown escaped)."""

    path: tuple[PathPart, ...]
    message: str

    def __post_init__(self) -> None:
        one_line = _LINE_BREAKING.sub(
            lambda m: m.group().encode("unicode_escape").decode(), self.message
        )
        object.__setattr__(self, "message", one_line)

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}"


class ConfigError(ValueError):
    """A configuration was refused; `issues` lists every problem found."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


# Pydantic adds the name of the union member or validator step to a location; those are not
# fields a user wrote.
_NOT_FIELDS = ("function-after[", "function-before[", "function-plain[", "json-or-python[")


def issues_from_pydantic(error: ValidationError, prefix: Sequence[PathPart] = ()) -> list[Issue]:
    """The problems Pydantic found, with messages a person can act on."""
    issues = []
    for item in error.errors(include_url=False):
        path = tuple(prefix) + tuple(
            part for part in item["loc"] if not str(part).startswith(_NOT_FIELDS)
        )
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "required field is missing"
        issues.append(Issue(path, message))
    return issues
