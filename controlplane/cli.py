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
from .model import (
    TARGETS,
    Config,
    ConfigError,
    ConfigFileError,
    Target,
    load_file,
    split_address,
    target_issues,
)
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


def load_for_target(path: Path, target: Target, group: str) -> Config:
    """The config in `path`, checked for `target` and for having `group`; or exit 2."""
    config = load_or_exit(path)
    problems = [f"{path}: {issue}" for issue in target_issues(config, target)]
    if group not in config.group_names():
        groups = ", ".join(config.group_names())
        problems.append(f"{path}: no node group named {group!r} (groups: {groups})")
    if problems:
        fail(problems)
    return config


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


render_app = typer.Typer(
    help="Print what a proxy receives for a config: `render envoy`, `render haproxy`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(render_app, name="render")

GroupOption = Annotated[
    str, typer.Option("--group", "-g", help="The node group to render (default: `default`).")
]


@render_app.command("envoy")
def render_envoy(
    file: Annotated[Path, typer.Argument(help="Config file (YAML or JSON).")],
    group: GroupOption = "default",
) -> None:
    """Print the xDS resources a node group's Envoys receive, as JSON."""
    from .envoy import translate

    config = load_for_target(file, "envoy", group)
    typer.echo(translate(config, group).to_json(), nl=False)


@render_app.command("haproxy")
def render_haproxy(
    file: Annotated[Path, typer.Argument(help="Config file (YAML or JSON).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for haproxy.cfg and its files.")
    ],
    group: GroupOption = "default",
) -> None:
    """Write the haproxy.cfg, map files and certificate files a node group's HAProxies run."""
    from .haproxy.render import render

    bundle = render(load_for_target(file, "haproxy", group), group)
    output.mkdir(parents=True, exist_ok=True)
    (output / "haproxy.cfg").write_text(bundle.cfg)
    for name, text in {**bundle.maps, **bundle.files}.items():
        (output / name).write_text(text)
    typer.echo(f"{output / 'haproxy.cfg'}: {1 + len(bundle.maps) + len(bundle.files)} files")


@app.command("envoy-bootstrap")
def envoy_bootstrap(
    node_id: Annotated[str, typer.Option("--node-id", help="The Envoy's node id.")],
    xds: Annotated[str, typer.Option("--xds", help="The xDS server as HOST:PORT.")],
    group: GroupOption = "default",
    delta: Annotated[bool, typer.Option(help="Use incremental (Delta) xDS.")] = False,
    admin_port: Annotated[
        int, typer.Option(help="Port of the admin interface on 127.0.0.1.")
    ] = 9901,
) -> None:
    """Print a bootstrap YAML that makes an Envoy fetch everything from the xDS server."""
    from .envoy.bootstrap import bootstrap_yaml

    try:
        host, port = split_address(xds)
    except ValueError as exc:
        fail([f"--xds: {exc}"])
    if not 1 <= admin_port <= 65535:
        fail([f"--admin-port: {admin_port} is not a port"])
    typer.echo(bootstrap_yaml(node_id, group, host, port, admin_port, delta), nl=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config format."""
    typer.echo(json.dumps(config_schema(), indent=2, sort_keys=True))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


ServerOption = Annotated[
    str,
    typer.Option(
        "--server", envvar="CONTROLPLANE_SERVER", help="The API, e.g. http://127.0.0.1:8080."
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="CONTROLPLANE_TOKEN", help="Bearer token (or CONTROLPLANE_TOKEN)."
    ),
]


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(help="Config file (YAML or JSON).")],
    server: ServerOption,
    token: TokenOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every proxy to run it.")
    ] = 30.0,
    message: Annotated[str | None, typer.Option(help="Why: kept with the revision.")] = None,
    allow_empty_groups: Annotated[
        bool,
        typer.Option(
            help="Apply even if a node group with connected proxies loses every listener."
        ),
    ] = False,
) -> None:
    """Show the diff, make FILE the config, and wait until every proxy acks it.

    Ends with "acked by N/N" (exit 0), or the NACKs or proxies still pending (exit 1);
    exit 2 when the server refuses the config, one line per problem.
    """
    from . import client

    config = load_or_exit(file)
    api = client.ApiClient(server, token)
    try:
        code = client.apply(
            api,
            config,
            str(file),
            typer.echo,
            lambda s: typer.echo(s, err=True),
            timeout,
            message,
            allow_empty_groups,
        )
    except client.ServerUnreachable as exc:
        typer.echo(f"cannot reach {exc}", err=True)
        code = client.EXIT_FAILED
    raise typer.Exit(code)


@app.command()
def status(server: ServerOption, token: TokenOption = None) -> None:
    """Print the fleet: each proxy, its group, the revision it runs, its last NACK."""
    from . import client

    api = client.ApiClient(server, token)
    try:
        code = client.status(api, typer.echo, lambda s: typer.echo(s, err=True))
    except client.ServerUnreachable as exc:
        typer.echo(f"cannot reach {exc}", err=True)
        code = client.EXIT_FAILED
    raise typer.Exit(code)


@app.command("haproxy-agent")
def haproxy_agent(
    server: ServerOption,
    group: Annotated[str, typer.Option("--group", "-g", help="The node group to follow.")],
    haproxy_bin: Annotated[
        str, typer.Option("--haproxy-bin", help="The haproxy executable.")
    ] = "haproxy",
    workdir: Annotated[
        Path | None,
        typer.Option(help="Directory for HAProxy's files (default: ./haproxy-agent-GROUP)."),
    ] = None,
    instance_id: Annotated[
        str | None, typer.Option("--instance-id", help="Name in the status (default: host:dir).")
    ] = None,
    token: TokenOption = None,
) -> None:
    """Run a local HAProxy on the config the control plane renders for GROUP, reporting back.

    Runs until interrupted (SIGINT or SIGTERM), then stops HAProxy.
    """
    import contextlib
    import logging
    import shutil
    import signal

    from .haproxy.agent import HAProxyAgent, check_server_url

    problems: list[str] = []
    try:
        check_server_url(server)
    except ValueError as exc:
        problems.append(str(exc))
    if not group or "/" in group:
        problems.append(f"--group {group!r}: expected a node group name")
    if shutil.which(haproxy_bin) is None:
        problems.append(f"--haproxy-bin {haproxy_bin!r}: not found or not executable")
    if problems:
        fail(problems)
    try:
        agent = HAProxyAgent(
            server,
            group,
            workdir or Path(f"haproxy-agent-{group}"),
            haproxy_bin=haproxy_bin,
            instance_id=instance_id,
            token=token,
        )
    except ValueError as exc:
        fail([str(exc)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        agent.run()


@app.command()
def serve(
    db: Annotated[Path, typer.Option(help="The SQLite store (created when missing).")],
    config: Annotated[
        Path | None, typer.Option(help="Config file that seeds an empty store.")
    ] = None,
    api: Annotated[str, typer.Option(help="Where the REST API listens.")] = "127.0.0.1:8080",
    xds: Annotated[str, typer.Option(help="Where the xDS server listens.")] = "127.0.0.1:18000",
    tokens: Annotated[
        Path | None, typer.Option(help="Tokens file (or CONTROLPLANE_TOKENS).")
    ] = None,
    insecure_local: Annotated[
        bool, typer.Option(help="Admit requests without a token (loopback API only).")
    ] = False,
    haproxy: Annotated[
        list[str] | None,
        typer.Option(help="Run a local HAProxy for this node group (repeatable)."),
    ] = None,
    haproxy_bin: Annotated[str, typer.Option(help="The haproxy executable.")] = "haproxy",
    haproxy_bind: Annotated[
        str | None,
        typer.Option(help="Bind the local HAProxies' listeners on this IP, ports unchanged."),
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Directory for local HAProxy files.")] = Path("run"),
    max_body_bytes: Annotated[
        int, typer.Option(min=0, help="The largest request body the API reads (413 above).")
    ] = 16 * 1024 * 1024,
) -> None:
    """Run the API, the xDS server and optional local HAProxies in one process."""
    import asyncio
    import logging

    from .api import TokenFileError
    from .serve import ServeError, ServeOptions
    from .serve import serve as run

    options = ServeOptions(
        db=db,
        config=config,
        api=api,
        xds=xds,
        tokens_file=tokens,
        insecure_local=insecure_local,
        haproxy_groups=tuple(haproxy or ()),
        haproxy_bin=haproxy_bin,
        haproxy_bind=haproxy_bind,
        workdir=workdir,
        max_body_bytes=max_body_bytes,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(run(options))
    except ConfigFileError as exc:
        fail([str(exc)])
    except ConfigError as exc:
        fail([f"{config}: {issue}" for issue in exc.issues])
    except (ServeError, TokenFileError, OSError) as exc:
        fail([str(exc)])


def main() -> None:
    """Entry point of the `controlplane` console script."""
    app()


if __name__ == "__main__":
    main()
