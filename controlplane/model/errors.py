"""Validation problems, each tied to the path of the field it is about."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

PathPart = str | int


def format_path(path: Sequence[PathPart]) -> str:
    """`('listeners', 0, 'address')` → `listeners[0].address`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(config)"


@dataclass(frozen=True)
class Issue:
    """One problem with a configuration: where it is and what is wrong."""

    path: tuple[PathPart, ...]
    message: str

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
