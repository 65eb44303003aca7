"""The `controlplane` command.

Exit codes: 0 success, 1 failure while running, 2 bad input (one line per problem on
stderr, never a traceback).
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import typer

from . import __version__, client
from .model import (
    PROXY_KINDS,
    Config,
    ConfigError,
    ConfigFileError,
    ProxyKind,
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


def load_for_target(path: Path, target: ProxyKind, group: str) -> Config:
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
    if value is not None and value not in PROXY_KINDS:
        raise typer.BadParameter(f"choose one of {', '.join(PROXY_KINDS)}")
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


ThreadsOption = Annotated[
    int,
    typer.Option(
        "--haproxy-threads",
        min=1,
        max=64,
        help="HAProxy's threads (nbthread in the rendered config).",
    ),
]


@render_app.command("haproxy")
def render_haproxy(
    file: Annotated[Path, typer.Argument(help="Config file (YAML or JSON).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for haproxy.cfg and its files.")
    ],
    group: GroupOption = "default",
    threads: ThreadsOption = 1,
) -> None:
    """Write the haproxy.cfg, map files and certificate files a node group's HAProxies run."""
    from .haproxy.render import render

    bundle = render(load_for_target(file, "haproxy", group), group, threads=threads)
    output.mkdir(parents=True, exist_ok=True)
    (output / "haproxy.cfg").write_text(bundle.cfg)
    for name, text in {**bundle.maps, **bundle.files}.items():
        (output / name).write_text(text)
    typer.echo(f"{output / 'haproxy.cfg'}: {1 + len(bundle.maps) + len(bundle.files)} files")


@app.command("envoy-bootstrap")
def envoy_bootstrap(
    node_id: Annotated[str, typer.Option("--node-id", help="The Envoy's node id.")],
    xds: Annotated[
        str,
        typer.Option(
            "--xds",
            help="The xDS server as HOST:PORT; several replicas as HOST:PORT,HOST:PORT,...",
        ),
    ],
    group: GroupOption = "default",
    delta: Annotated[bool, typer.Option(help="Use incremental (Delta) xDS.")] = False,
    admin_port: Annotated[
        int, typer.Option(help="Port of the admin interface on 127.0.0.1.")
    ] = 9901,
    xds_ca: Annotated[
        Path | None,
        typer.Option("--xds-ca", help="CA file that signed the xDS server's certificate (mTLS)."),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="This node's certificate file, naming its id and group."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="This node's private key file.")
    ] = None,
) -> None:
    """Print a bootstrap YAML that makes an Envoy fetch everything from the xDS server.

    Several --xds servers (the replicas of one control plane) are endpoints of one xDS
    cluster: when the stream's replica goes away, Envoy reconnects to another.

    With --xds-ca, --tls-cert and --tls-key (all three) Envoy reaches the server over mutual
    TLS; its certificate needs the URI SAN spiffe://controlplane/group/GROUP/node/NODE-ID
    (or node/* for any node of the group). The files are named, not copied: Envoy reads them
    on its own host (a container, another machine), so they need not exist here; relative
    paths are made absolute from the current directory.
    """
    from .envoy.bootstrap import XdsClientTls, bootstrap_yaml

    problems = []
    servers: list[tuple[str, int]] = []
    for item in xds.split(","):
        try:
            servers.append(split_address(item.strip()))
        except ValueError as exc:
            problems.append(f"--xds: {exc}")
    if not 1 <= admin_port <= 65535:
        problems.append(f"--admin-port: {admin_port} is not a port")
    files = {"--xds-ca": xds_ca, "--tls-cert": tls_cert, "--tls-key": tls_key}
    tls = None
    if any(files.values()):
        if not all(files.values()):
            problems.append("--xds-ca, --tls-cert and --tls-key go together (mutual TLS)")
        if xds_ca and tls_cert and tls_key:
            tls = XdsClientTls(
                str(xds_ca.resolve()), str(tls_cert.resolve()), str(tls_key.resolve())
            )
    if problems:
        fail(problems)
    (host, port), *others = servers
    typer.echo(
        bootstrap_yaml(node_id, group, host, port, admin_port, delta, tls=tls, also_xds=others),
        nl=False,
    )


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
CaOption = Annotated[
    Path | None,
    typer.Option(
        "--ca",
        envvar="CONTROLPLANE_CA",
        help="CA file that signed the server's certificate (https; default: the system's CAs).",
    ),
]


def api_client(server: str, token: str | None, ca: Path | None) -> client.ApiClient:
    """A client of the API at `server`, verifying https against `ca`; or exit 2."""
    try:
        return client.ApiClient(server, token, ca=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        fail([f"--ca {ca}: {getattr(exc, 'strerror', None) or exc}"])


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(help="Config file (YAML or JSON).")],
    server: ServerOption,
    token: TokenOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every proxy to run it.")
    ] = 30.0,
    message: Annotated[str | None, typer.Option(help="Why: kept with the revision.")] = None,
    ca: CaOption = None,
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
    config = load_or_exit(file)
    api = api_client(server, token, ca)
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
def status(
    server: ServerOption,
    token: TokenOption = None,
    ca: CaOption = None,
    verify: Annotated[
        bool,
        typer.Option(
            help="Also compare what each proxy actually runs with the head (exit 1 on drift)."
        ),
    ] = False,
) -> None:
    """Print the fleet: each proxy, its group, the revision it runs, its last NACK; with
    --verify, what each proxy actually runs (Envoy's config_dump, a local HAProxy's runtime
    API) against what the control plane intended."""
    api = api_client(server, token, ca)
    try:
        code = client.status(api, typer.echo, lambda s: typer.echo(s, err=True), verify)
    except client.ServerUnreachable as exc:
        typer.echo(f"cannot reach {exc}", err=True)
        code = client.EXIT_FAILED
    raise typer.Exit(code)


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`k=v` options as a mapping; exit 2 naming the option when one has no `=`."""
    found: dict[str, str] = {}
    for value in values or ():
        name, sep, text = value.partition("=")
        if not sep or not name:
            fail([f"{option} {value!r}: expected NAME=VALUE"])
        found[name] = text
    return found


@app.command()
def explain(
    file: Annotated[
        Path | None, typer.Argument(help="Config file (YAML or JSON); or --server.")
    ] = None,
    listener: Annotated[str, typer.Option(help="The listener the request reaches.")] = "",
    host: Annotated[str | None, typer.Option(help="The Host header (or :authority).")] = None,
    path: Annotated[str, typer.Option(help="The path, with a query string if any.")] = "/",
    method: Annotated[str, typer.Option(help="The HTTP method.")] = "GET",
    header: Annotated[
        list[str] | None, typer.Option(help="A request header, NAME=VALUE (repeatable).")
    ] = None,
    cookie: Annotated[
        list[str] | None, typer.Option(help="A cookie, NAME=VALUE (repeatable).")
    ] = None,
    sni: Annotated[str | None, typer.Option(help="The TLS server name (https, tls).")] = None,
    client_ip: Annotated[
        str, typer.Option("--client-ip", help="The client address the proxy sees.")
    ] = "127.0.0.1",
    body: Annotated[
        str | None, typer.Option(help="The request body (what firewall body rules read).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    server: Annotated[
        str | None, typer.Option(help="Explain at a running server's head instead of FILE.")
    ] = None,
    token: TokenOption = None,
    ca: CaOption = None,
) -> None:
    """Print which way a request goes, as the model defines it: listener, TLS, virtual host,
    route (and why it beat the others that matched), action, the policies that apply, and
    what Envoy and HAProxy call each part. Exit 2 for a bad request or an unknown listener."""
    from .explain import as_text
    from .explain import explain as explain_request
    from .model.decision import parse_request

    if (file is None) == (server is None):
        fail(["explain: give a config FILE or --server, not both"])
    if not listener:
        fail(["explain: --listener is required"])
    data: dict[str, object] = {
        "listener": listener,
        "host": host,
        "path": path,
        "method": method,
        "headers": _pairs(header, "--header"),
        "cookies": _pairs(cookie, "--cookie"),
        "sni": sni,
        "client_ip": client_ip,
        "body": body,
    }
    if server is not None:
        decision = _explain_remote(api_client(server, token, ca), data)
    else:
        assert file is not None
        config = load_or_exit(file)
        try:
            decision = explain_request(config, parse_request(data)).as_json()
        except ConfigError as exc:
            fail([f"explain: {issue}" for issue in exc.issues])
    if as_json:
        typer.echo(json.dumps(decision, indent=2))
    else:
        for line in as_text(decision):
            typer.echo(line)


def _explain_remote(api: client.ApiClient, data: dict[str, object]) -> dict[str, Any]:
    try:
        reply = api.request("POST", "/v1/explain", data)
    except client.ServerUnreachable as exc:
        typer.echo(f"cannot reach {exc}", err=True)
        raise typer.Exit(client.EXIT_FAILED) from None
    if reply.status == 422:
        fail(client.issue_lines(reply, "explain"))
    if reply.status != 200 or not isinstance(reply.data, dict):
        typer.echo(f"explain: {reply.error}", err=True)
        raise typer.Exit(client.EXIT_FAILED)
    return reply.data


@app.command()
def advise(
    file: Annotated[Path, typer.Argument(help="Config file (YAML or JSON).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the advice as JSON.")] = False,
    measured: Annotated[
        Path | None,
        typer.Option(
            help="A `bench l4-vs-l7` JSON file to cite (default: the run docs/l4-vs-l7.md records)."
        ),
    ] = None,
) -> None:
    """Apply the L4-or-L7 decision framework to a config: per listener the layer, the
    features that need L7 (or that it could run at L4, and what that saves, measured), the
    traps, and whether a two-tier layout fits. Exit 2 for a config that does not validate
    (with the traps that explain why, when there are)."""
    from . import advise as advising
    from .model.advice import advise as advice_for
    from .model.advice import passthrough_traps
    from .model.loading import parse_text

    try:
        figures = advising.load_figures(measured)
    except (OSError, ValueError) as exc:
        fail([f"--measured {measured}: {exc}"])
    try:
        config = load_file(file)
    except ConfigFileError as exc:
        fail([str(exc)])
    except ConfigError as exc:
        try:
            data = parse_text(file.read_text(), str(file))
        except (ConfigFileError, OSError):
            data = None
        traps = passthrough_traps(data)
        fail(
            [f"{file}: trap {t.kind} at {t.where}: {t.message}" for t in traps]
            + [f"{file}: {issue}" for issue in exc.issues]
        )
    advice = advice_for(config)
    if as_json:
        typer.echo(json.dumps(advising.as_json(advice, figures), indent=2))
    else:
        for line in advising.as_text(advice, figures):
            typer.echo(line)


bench_app = typer.Typer(
    help="Measure on this machine, through real proxies the product configures.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(bench_app, name="bench")


@bench_app.command("l4-vs-l7")
def bench_l4_vs_l7(
    out: Annotated[Path, typer.Option(help="Directory for l4-vs-l7.json and l4-vs-l7.png.")] = Path(
        "bench-results"
    ),
    seconds: Annotated[int, typer.Option(min=1, help="Seconds of wrk per measurement.")] = 5,
    connections: Annotated[int, typer.Option(min=1, help="wrk's connections.")] = 16,
    requests: Annotated[
        int | None,
        typer.Option(min=10, help="Use the Python client: this many requests per measurement."),
    ] = None,
    idle: Annotated[
        int, typer.Option(min=10, max=5000, help="Idle connections held to measure memory.")
    ] = 1000,
) -> None:
    """New connections/s, keep-alive requests/s, added latency (p50, p99) and memory per idle
    connection through HAProxy and Envoy in tcp and http mode (one worker each) against the
    backend directly, and TLS termination against passthrough; CPU time per request from
    /proc beside each rate. Prints a table beside the article's claims, writes JSON and a
    PNG chart (with the `bench` extra's matplotlib)."""
    import tempfile

    from .bench import report
    from .bench.l4_vs_l7 import Settings, run
    from .bench.lab import BenchError
    from .bench.load import wrk_binary

    if requests is None and wrk_binary() is None:
        fail(["bench: wrk is not installed (apt-get install wrk), or pass --requests N"])
    settings = Settings(seconds, connections, requests, idle)
    try:
        with tempfile.TemporaryDirectory(prefix="cp-bench-") as workdir:
            data = run(Path(workdir), settings, lambda s: typer.echo(f"  {s}", err=True))
    except BenchError as exc:
        typer.echo(f"bench: {exc}", err=True)
        raise typer.Exit(client.EXIT_FAILED) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "l4-vs-l7.json").write_text(json.dumps(data, indent=2) + "\n")
    for line in [*report.table(data), "", *report.tls_table(data), "", *report.reading(data)]:
        typer.echo(line)
    machine = data["machine"]
    typer.echo(
        f"\nload average {machine['load_average_start'][0]:.2f} -> "
        f"{machine['load_average_end'][0]:.2f} on {machine['cpus']} CPUs; {out / 'l4-vs-l7.json'}"
    )
    if report.chart(data, out / "l4-vs-l7.png"):
        typer.echo(f"chart: {out / 'l4-vs-l7.png'}")
    else:
        typer.echo("chart: matplotlib is not installed (pip install 'controlplane[bench]')")


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
    ca: CaOption = None,
) -> None:
    """Run a local HAProxy on the config the control plane renders for GROUP, reporting back.

    --server may name several replicas of the control plane, separated by commas: while one
    cannot be reached the agent polls the next.

    Runs until interrupted (SIGINT or SIGTERM), then stops HAProxy.
    """
    import contextlib
    import logging
    import shutil
    import signal

    from .proxies.haproxy.agent import HAProxyAgent, check_server_urls

    problems: list[str] = []
    try:
        check_server_urls(server)
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
            ca=str(ca) if ca else None,
        )
    except ValueError as exc:
        fail([str(exc)])
    except (OSError, ssl.SSLError) as exc:
        fail([f"--ca {ca}: {getattr(exc, 'strerror', None) or exc}"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        agent.run()


haproxy_app = typer.Typer(
    help="HAProxies that serve (or haproxy-agent) left running.", no_args_is_help=True
)
app.add_typer(haproxy_app, name="haproxy")


@haproxy_app.command("stop")
def haproxy_stop(
    workdir: Annotated[
        Path,
        typer.Option(help="The --workdir of serve (or of haproxy-agent) that left them running."),
    ] = Path("run"),
) -> None:
    """Stop the HAProxies left running from WORKDIR: serve's (one per group, in
    WORKDIR/haproxy-GROUP) or an agent's (WORKDIR itself). Nothing running is not an error."""
    from .proxies.haproxy.manager import stop_left_running

    try:
        stopped = stop_left_running(workdir)
    except OSError as exc:
        fail([f"--workdir {workdir}: {exc.strerror or exc}"])
    for item in stopped:
        typer.echo(f"stopped HAProxy (master pid {item.master}) of {item.workdir}")
    if not stopped:
        typer.echo(f"no HAProxy left running from {workdir}")


import_app = typer.Typer(
    help="Configs from other tools' descriptions.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(import_app, name="import")


@import_app.command("gateway-api")
def import_gateway_api(
    files: Annotated[
        list[Path], typer.Argument(help="Kubernetes YAML: Gateways and their routes.")
    ],
    backends: Annotated[
        Path,
        typer.Option(
            help="YAML mapping each Service name to its endpoints (host:port, or a list)."
        ),
    ],
) -> None:
    """Print the config that Gateway, HTTPRoute, GRPCRoute, TLSRoute and TCPRoute resources
    describe. Whatever cannot be carried over is named on stderr, a line each; exit 2 only
    when nothing could be imported (or a file cannot be read)."""
    import yaml

    from .gateway_api import backends_of, import_resources, resources_of
    from .model import ConfigError, dump_yaml, parse_config

    def documents(path: Path) -> list[Any]:
        try:
            return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except OSError as exc:
            fail([f"{path}: {exc.strerror or exc}"])
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            fail([f"{path}: not YAML: {str(exc).splitlines()[0]}"])

    try:
        mapping = backends_of(yaml.safe_load(backends.read_text(encoding="utf-8")))
    except OSError as exc:
        fail([f"{backends}: {exc.strerror or exc}"])
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        fail([f"{backends}: {str(exc).splitlines()[0]}"])
    found, skipped = resources_of([(str(p), d) for p in files for d in documents(p)])
    imported = import_resources(found, mapping)
    for line in [*skipped, *imported.dropped]:
        typer.echo(f"dropped: {line}", err=True)
    if imported.empty:
        fail(["nothing could be imported: no listener with a route"])
    try:
        config = parse_config(imported.config)
    except ConfigError as exc:
        fail([f"the imported config does not validate: {issue}" for issue in exc.issues])
    typer.echo(dump_yaml(config), nl=False)


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="CONTROLPLANE_DB",
        help="The store: a SQLite file, or a postgresql:// URL (or CONTROLPLANE_DB).",
    ),
]


@app.command("waf-serve")
def waf_serve(
    listen: Annotated[
        str, typer.Option(help="gRPC ext_authz (Envoy) here, SPOP (HAProxy) on the next port.")
    ] = "127.0.0.1:9470",
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 2,
    crs_dir: Annotated[
        Path, typer.Option(help="The OWASP CRS rules (Debian's modsecurity-crs).")
    ] = Path("/usr/share/modsecurity-crs/rules"),
    max_body_bytes: Annotated[
        int, typer.Option(min=0, max=8192, help="The most body bytes a verdict reads.")
    ] = 8192,
) -> None:
    """Run the CRS verdict service the proxies' firewalls call (ModSecurity v3 and the OWASP
    Core Rule Set), until SIGTERM or SIGINT."""
    from .firewall.service import serve as serve_verdicts
    from .model.types import split_address

    try:
        split_address(listen)
    except ValueError as exc:
        fail([f"--listen: {exc}"])
    if not crs_dir.is_dir():
        fail([f"--crs-dir: {crs_dir} is not a directory (apt install modsecurity-crs)"])
    try:
        serve_verdicts(listen, workers, crs_dir, max_body_bytes)
    except OSError as exc:
        fail([f"waf-serve: cannot listen on {listen}: {exc.strerror}"])


@app.command()
def serve(
    db: DbOption,
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
    haproxy_threads: ThreadsOption = 1,
    workdir: Annotated[Path, typer.Option(help="Directory for local HAProxy files.")] = Path("run"),
    xds_tls_cert: Annotated[
        Path | None, typer.Option(help="The xDS server's certificate chain (PEM file).")
    ] = None,
    xds_tls_key: Annotated[
        Path | None, typer.Option(help="The xDS server's private key (PEM file).")
    ] = None,
    xds_client_ca: Annotated[
        Path | None, typer.Option(help="CA that signs the proxies' client certificates.")
    ] = None,
    xds_insecure: Annotated[
        bool, typer.Option(help="Allow plain-text xDS on a non-loopback address.")
    ] = False,
    api_tls_cert: Annotated[
        Path | None, typer.Option(help="The API's certificate chain (PEM file): serve HTTPS.")
    ] = None,
    api_tls_key: Annotated[
        Path | None, typer.Option(help="The API's private key (PEM file).")
    ] = None,
    migrate: Annotated[
        bool, typer.Option(help="Apply the schema migrations the database lacks first.")
    ] = False,
    forget_after: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds after which the status drops a proxy that disconnected "
            "(or an agent that stopped polling).",
        ),
    ] = 3600.0,
    max_body_bytes: Annotated[
        int, typer.Option(min=0, help="The largest request body the API reads (413 above).")
    ] = 16 * 1024 * 1024,
    replica: Annotated[
        str | None,
        typer.Option(
            help="This replica's name in the status it shares with the other replicas of a "
            "PostgreSQL store (letters, digits, '.', '_', '-'; default: host, PID and a "
            "random part).",
        ),
    ] = None,
    waf: Annotated[
        str | None,
        typer.Option(
            help="Run the CRS verdict service (waf-serve) here for local proxies "
            "(gRPC on this port, SPOP on the next)."
        ),
    ] = None,
    waf_workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes of the verdict service.")
    ] = 2,
    xds_workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="xDS server processes sharing the xDS port, each holding its share of the "
            "streams (default: the cores this process may run on; 1: in this process).",
        ),
    ] = None,
    targets: Annotated[
        str,
        typer.Option(
            help="The proxies this server feeds, comma-separated: envoy, haproxy. Writes are "
            "refused only for what these cannot express; nothing is compiled for the others."
        ),
    ] = ",".join(PROXY_KINDS),
) -> None:
    """Run the API, the xDS server and optional local HAProxies.

    xDS hands out private keys: off loopback it needs mutual TLS (--xds-tls-cert,
    --xds-tls-key, --xds-client-ca; each proxy's certificate names its node id and group),
    or --xds-insecure. The API serves HTTPS with --api-tls-cert and --api-tls-key.

    A SQLite file is created when missing; a PostgreSQL database must be migrated first
    (`controlplane db migrate`, or `--migrate`).
    """
    import asyncio
    import logging

    from .api import TokenFileError
    from .serve import ServeError, ServeOptions, TlsFiles
    from .serve import serve as run

    problems = []
    xds_files = (xds_tls_cert, xds_tls_key, xds_client_ca)
    if any(xds_files) and not all(xds_files):
        problems.append("--xds-tls-cert, --xds-tls-key and --xds-client-ca go together")
    if bool(api_tls_cert) != bool(api_tls_key):
        problems.append("--api-tls-cert and --api-tls-key go together")
    fed = tuple(dict.fromkeys(t.strip() for t in targets.split(",")))
    if not fed or any(t not in PROXY_KINDS for t in fed):
        problems.append(f"--targets: choose among {', '.join(PROXY_KINDS)}, comma-separated")
    elif haproxy and "haproxy" not in fed:
        problems.append("--haproxy runs a local HAProxy: --targets must include haproxy")
    if problems:
        fail(problems)

    options = ServeOptions(
        targets=cast(tuple[ProxyKind, ...], fed),
        db=db,
        config=config,
        api=api,
        xds=xds,
        tokens_file=tokens,
        insecure_local=insecure_local,
        haproxy_groups=tuple(haproxy or ()),
        haproxy_bin=haproxy_bin,
        haproxy_bind=haproxy_bind,
        haproxy_threads=haproxy_threads,
        workdir=workdir,
        xds_tls=TlsFiles(xds_tls_cert, xds_tls_key, xds_client_ca)
        if xds_tls_cert and xds_tls_key and xds_client_ca
        else None,
        xds_insecure=xds_insecure,
        api_tls=TlsFiles(api_tls_cert, api_tls_key) if api_tls_cert and api_tls_key else None,
        migrate=migrate,
        forget_after=forget_after,
        max_body_bytes=max_body_bytes,
        replica=replica,
        waf=waf,
        waf_workers=waf_workers,
        xds_workers=xds_workers or len(os.sched_getaffinity(0)),
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


db_app = typer.Typer(
    help="The store: migrate its schema, export and import its whole history.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(db: DbOption) -> None:
    """Apply the schema migrations the database lacks (a SQLite file is created when missing).

    Run it before serving a new controlplane version on PostgreSQL; replicas of the old
    version refuse a schema newer than they know.
    """
    from .store import StoreError, migrate
    from .store.postgres import redact

    try:
        before, after = migrate(db)
    except StoreError as exc:
        fail([str(exc)])
    done = f"migrated from version {before}" if before != after else "nothing to do"
    typer.echo(f"{redact(db)}: schema version {after} ({done})")


@db_app.command("export")
def db_export(
    file: Annotated[Path, typer.Argument(help="Where to write the history (JSON Lines).")],
    db: DbOption,
) -> None:
    """Write every revision (number, time, author, message, config) to FILE, oldest first."""
    from .store import StoreError, export_history, open_store
    from .store.postgres import redact

    try:
        store = open_store(db, create=False)
    except StoreError as exc:
        fail([str(exc)])
    partial = file.with_name(f".{file.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            count = export_history(store, out)
        partial.replace(file)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail([f"{file}: {exc.strerror or exc}"])
    finally:
        store.close()
    typer.echo(f"{file}: {count} revisions from {redact(db)}")


@db_app.command("import")
def db_import(
    file: Annotated[Path, typer.Argument(help="A history written by `controlplane db export`.")],
    db: DbOption,
    force: Annotated[
        bool,
        typer.Option(help="Replace the revisions the store holds (stop its replicas first)."),
    ] = False,
) -> None:
    """Make the history in FILE the store's whole history, every revision as it was.

    The store must be migrated, and empty unless --force. All or nothing: a bad line or a
    config that does not validate writes nothing (exit 2, naming the line).
    """
    from .store import NotEmpty, StoreError, import_history, open_store
    from .store.postgres import redact

    try:
        source = file.open(encoding="utf-8")
    except OSError as exc:
        fail([f"{file}: {exc.strerror or exc}"])
    try:
        store = open_store(db)
    except StoreError as exc:
        source.close()
        fail([str(exc)])
    try:
        with source:
            count = import_history(store, source, str(file), replace=force)
    except NotEmpty as exc:
        fail([f"{exc}; import into an empty store, or pass --force to replace them"])
    except StoreError as exc:
        fail([str(exc)])
    except UnicodeDecodeError:
        fail([f"{file}: not UTF-8 text"])
    finally:
        store.close()
    typer.echo(f"{redact(db)}: {count} revisions imported from {file}")


lab_app = typer.Typer(
    help="The two-tier lab in Docker (compose/): `lab up`, `lab status`, `lab down`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(lab_app, name="lab")

LabStateOption = Annotated[
    Path | None, typer.Option("--state-dir", help="Where the lab keeps its settings and secrets.")
]
LabProjectOption = Annotated[str, typer.Option("--project", help="The compose project name.")]


def _err(line: str) -> None:
    typer.echo(line, err=True)


@lab_app.command("up")
def lab_up(
    state_dir: LabStateOption = None,
    project: LabProjectOption = "controlplane-lab",
    registry: Annotated[
        bool, typer.Option(help="Pull the official images and build the project image online.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every proxy.")] = 180.0,
) -> None:
    """Build the images when missing (offline), start the lab, wait until every proxy runs the
    config, and print its URLs and curls."""
    from .lab import commands

    lab = commands.Lab(state_dir or commands.DEFAULT_STATE, project)
    code = commands.run(
        lambda: commands.up(lab, typer.echo, registry=registry, timeout=timeout), _err
    )
    raise typer.Exit(code)


@lab_app.command("down")
def lab_down(
    state_dir: LabStateOption = None, project: LabProjectOption = "controlplane-lab"
) -> None:
    """Remove the lab's containers, network, volumes and state (the images stay cached)."""
    from .lab import commands

    lab = commands.Lab(state_dir or commands.DEFAULT_STATE, project)
    raise typer.Exit(commands.run(lambda: commands.down(lab, typer.echo), _err))


@lab_app.command("status")
def lab_status(
    state_dir: LabStateOption = None, project: LabProjectOption = "controlplane-lab"
) -> None:
    """Show the lab's containers and its fleet; exit 1 when a proxy is not current."""
    from .lab import commands

    lab = commands.Lab(state_dir or commands.DEFAULT_STATE, project)
    raise typer.Exit(commands.run(lambda: commands.status(lab, typer.echo), _err))


def main() -> None:
    """Entry point of the `controlplane` console script."""
    app()


if __name__ == "__main__":
    main()
