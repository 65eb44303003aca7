"""The `controlplane` command.

Exit codes: 0 success, 1 failure while running, 2 bad input (one line per problem on
stderr, never a traceback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from . import __version__
from .model import TARGETS, Config, ConfigError, ConfigFileError, load_file, target_issues
from .model.schema import config_schema

app = typer.Typer(
    help="One load-balancing model, served to Envoy (xDS) and HAProxy (rendered config).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_BAD_INPUT = 2


def fail(lines: list[str]) -> NoReturn:
    """Report bad input, one line per problem, and exit 2."""
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def load_or_exit(path: Path) -> Config:
    """The validated config in `path`, or exit 2 naming each problem."""
    try:
        return load_file(path)
    except ConfigFileError as exc:
        fail([str(exc)])
    except ConfigError as exc:
        fail([f"{path}: {issue}" for issue in exc.issues])


def _target_choice(value: str | None) -> str | None:
    if value is not None and value not in TARGETS:
        raise typer.BadParameter(f"choose one of {', '.join(TARGETS)}")
    return value


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Config files (YAML or JSON).")],
    target: Annotated[
        str | None,
        typer.Option(
            help="Also check what this proxy can express: envoy or haproxy.",
            callback=_target_choice,
        ),
    ] = None,
) -> None:
    """Check config files; exit 0 when all are valid, 2 with one line per problem otherwise."""
    problems: list[str] = []
    for path in files:
        try:
            config = load_file(path)
        except ConfigFileError as exc:
            problems.append(str(exc))
            continue
        except ConfigError as exc:
            problems.extend(f"{path}: {issue}" for issue in exc.issues)
            continue
        targets = [target] if target else []
        for name in targets:
            problems.extend(f"{path}: {issue}" for issue in target_issues(config, name))  # type: ignore[arg-type]
    if problems:
        fail(problems)
    for path in files:
        typer.echo(f"{path}: valid")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config format."""
    typer.echo(json.dumps(config_schema(), indent=2, sort_keys=True))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `controlplane` console script."""
    app()


if __name__ == "__main__":
    main()
