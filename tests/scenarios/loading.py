"""Reading scenario files, refusing any mistake with the file and the field it is in.

Beyond the format itself, a scenario must hang together: its config validates (with
stand-in addresses), its steps name listeners and backends that exist and fit, its
statistics are safe, and what a proxy cannot express is declared in `rejected_by`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import ValidationError

from controlplane.model import PROXY_KINDS, Config, ConfigError, format_path, target_issues
from controlplane.model.errors import issues_from_pydantic

from .addressing import concrete_config, endpoint_references, listener_names
from .format import Scenario, Step

STEP_KINDS_BY_PROTOCOL = {
    "http": {"http", "websocket", "grpc"},
    "https": {"http"},
    "tcp": {"tcp"},
    "tls": {"tls"},
}
UPSTREAM_DIRECTORY = "gateway-api"
"""Cases translated from the Gateway API's conformance tests live here and name their source."""
SIGMAS = 4.0
"""How many standard deviations a `shares` tolerance must span."""


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file and each faulty field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


def load_scenario(path: str | Path) -> Scenario:
    """A checked scenario from one YAML file, or ScenarioError."""
    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(source, [exc.strerror or str(exc)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ScenarioError(source, [f"{where}{exc.problem or exc}"]) from None
    if not isinstance(data, dict):
        raise ScenarioError(source, ["a scenario is a mapping"])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, [str(issue) for issue in issues_from_pydantic(exc)]) from None
    problems = list(scenario_problems(scenario))
    if UPSTREAM_DIRECTORY in path.parts[:-1] and scenario.upstream is None:
        problems.append("upstream: a translated case names the upstream files and commits")
    if problems:
        raise ScenarioError(source, problems)
    if scenario.name != path.stem:
        raise ScenarioError(source, [f"name: {scenario.name!r} differs from the file name"])
    return scenario


def scenario_files(directory: str | Path) -> list[Path]:
    """The scenario files of a directory, by name."""
    return sorted(Path(directory).glob("*.yaml"))


def load_scenarios(directory: str | Path) -> list[Scenario]:
    """Every scenario of a directory, by file name; the first faulty file raises."""
    return [load_scenario(path) for path in scenario_files(directory)]


def stand_in_config(scenario: Scenario) -> Config:
    """The scenario's config validated with made-up loopback addresses (no process starts)."""
    backends = {b.name: f"127.0.0.1:{20000 + i}" for i, b in enumerate(scenario.backends)}
    listeners = {n: f"127.0.0.1:{30000 + i}" for i, n in enumerate(listener_names(scenario))}
    return concrete_config(scenario, backends, listeners)


def scenario_problems(scenario: Scenario) -> Iterator[str]:
    """Every way a structurally valid scenario does not hang together."""
    if not scenario.playable:
        return
    declared = [b.name for b in scenario.backends]
    for name in {n for n in declared if declared.count(n) > 1}:
        yield f"backends: {name!r} is declared twice"
    for path, name in endpoint_references(scenario):
        if name not in declared:
            yield f"{path}: no backend named {name!r}"
    if any(name not in declared for _, name in endpoint_references(scenario)):
        return
    try:
        config = stand_in_config(scenario)
    except ConfigError as exc:
        yield from (f"config.{issue}" for issue in exc.issues)
        return
    yield from _rejection_problems(scenario, config)
    if scenario.group not in config.group_names():
        yield f"group: the config has no node group {scenario.group!r}"
        return
    group_config = config.for_group(scenario.group)
    for index, step in enumerate(scenario.requests):
        where = f"requests[{index}]"
        yield from (f"{where}.{p}" for p in _step_problems(step, group_config, set(declared)))


def _rejection_problems(scenario: Scenario, config: Config) -> Iterator[str]:
    rejected = scenario.rejected_by
    for target in PROXY_KINDS:
        issues = target_issues(config, target)
        if rejected is not None and rejected.target == target:
            if not any(
                format_path(issue.path) == rejected.path
                and rejected.message_contains in issue.message
                for issue in issues
            ):
                seen = "; ".join(str(i) for i in issues) or "no issue"
                yield (
                    f"rejected_by: {target} should refuse {rejected.path} with "
                    f"{rejected.message_contains!r}, but target_issues gives: {seen}"
                )
        else:
            for issue in issues:
                yield f"config.{issue} (declare it in rejected_by, or change the config)"


def _step_problems(step: Step, config: Config, backends: set[str]) -> Iterator[str]:
    listener = next((x for x in config.listeners if x.name == step.listener), None)
    if listener is None:
        yield f"listener: the group's config has no listener named {step.listener!r}"
        return
    if step.kind not in STEP_KINDS_BY_PROTOCOL[listener.protocol]:
        yield f"kind: a {step.kind} step cannot go to a {listener.protocol} listener"
    if step.sni is not None and listener.protocol not in ("https", "tls"):
        yield f"sni: listener {listener.name!r} does not speak TLS"
    if listener.accept_proxy_protocol and step.proxy_protocol is None:
        yield f"proxy_protocol: listener {listener.name!r} requires a PROXY header"
    if not listener.accept_proxy_protocol and step.proxy_protocol is not None:
        yield f"proxy_protocol: listener {listener.name!r} does not accept PROXY headers"
    for name in sorted(step.expect.named_backends() - backends):
        yield f"expect: no backend named {name!r}"
    if step.expect.shares is not None:
        for name, share in step.expect.shares.items():
            sigma = math.sqrt(share * (1 - share) / step.count)
            if step.expect.tolerance < SIGMAS * sigma:
                yield (
                    f"expect.shares.{name}: tolerance {step.expect.tolerance} is less than "
                    f"{SIGMAS:g} standard deviations ({SIGMAS * sigma:.4f}) over {step.count} "
                    "requests; raise count or tolerance"
                )
