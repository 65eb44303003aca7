"""The `controlplane` command: exit 0 when valid, 2 with one line per problem, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))


def controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_accepts_every_example() -> None:
    result = controlplane("validate", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") == len(EXAMPLES)


@pytest.mark.parametrize("target", ["envoy", "haproxy"])
def test_validate_for_a_target_accepts_the_examples(target: str) -> None:
    result = controlplane("validate", "--target", target, *EXAMPLES)
    assert result.returncode == 0, result.stderr


def test_an_invalid_config_gives_exit_2_and_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "listeners:\n"
        "  - {name: web, address: 127.0.0.1:8080, protocol: http, virtual_hosts: [\n"
        "      {name: a, domains: ['*'], routes: [{backends: [{cluster: apii}]}]}]}\n"
        "clusters:\n"
        "  - {name: api, endpoints: [{address: 127.0.0.1:1}]}\n"
        "  - {name: api, endpoints: [{address: 127.0.0.1:2}]}\n"
    )
    result = controlplane("validate", str(path))
    assert result.returncode == 2
    assert sorted(result.stderr.splitlines()) == [
        f"{path}: clusters[1].name: another cluster is already named 'api'",
        f"{path}: listeners[0].virtual_hosts[0].routes[0].backends[0].cluster: "
        "no cluster named 'apii'",
    ]
    assert "Traceback" not in result.stderr


def test_a_target_it_cannot_express_gives_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "maglev.yaml"
    path.write_text(
        "listeners: [{name: db, address: 127.0.0.1:5432, protocol: tcp, default_cluster: pg}]\n"
        "clusters: [{name: pg, protocol: tcp, lb_policy: maglev, hash_on: {source_ip: true},\n"
        "            endpoints: [{address: 127.0.0.1:1}]}]\n"
    )
    assert controlplane("validate", str(path)).returncode == 0
    result = controlplane("validate", "--target", "haproxy", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{path}: clusters[0].lb_policy: haproxy has no maglev hashing; "
        "use ring_hash (consistent hashing)"
    )


def test_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("listeners: [\n")
    result = controlplane("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:2:1: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_file_gives_exit_2(tmp_path: Path) -> None:
    result = controlplane("validate", str(tmp_path / "none.yaml"))
    assert result.returncode == 2
    assert "No such file" in result.stderr


def test_an_unknown_target_gives_exit_2() -> None:
    result = controlplane("validate", "--target", "nginx", EXAMPLES[0])
    assert result.returncode == 2
    assert "choose one of envoy, haproxy" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_prints_the_published_schema() -> None:
    result = controlplane("schema")
    assert result.returncode == 0
    published = json.loads((ROOT / "schemas" / "config.schema.json").read_text())
    assert json.loads(result.stdout) == published, "run `make schema` to refresh it"


def test_the_schema_shows_duration_defaults_as_users_write_them() -> None:
    definitions = json.loads(controlplane("schema").stdout)["$defs"]
    assert definitions["Route"]["properties"]["timeout"]["default"] == "15s"
    assert definitions["Cluster"]["properties"]["connect_timeout"]["default"] == "5s"
    assert definitions["HealthCheck"]["properties"]["interval"]["default"] == "5s"
    assert definitions["HashCookie"]["properties"]["ttl"]["default"] == "1h"


def test_a_duration_out_of_range_is_refused_naming_the_unit(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "clusters: [{name: a, endpoints: [{address: '127.0.0.1:80'}], connect_timeout: 0ms}]\n"
    )
    result = controlplane("validate", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{config}: clusters[0].connect_timeout: must be at least 1ms"


def test_version() -> None:
    result = controlplane("version")
    assert result.returncode == 0 and result.stdout.strip()


def test_envoy_bootstrap_is_accepted_by_envoy(tmp_path: Path) -> None:
    result = controlplane(
        "envoy-bootstrap",
        "--node-id",
        "edge-1",
        "--group",
        "l4",
        "--xds",
        "127.0.0.1:18000",
        "--delta",
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "bootstrap.yaml"
    path.write_text(result.stdout)
    envoy = Path(sys.executable).with_name("envoy")
    check = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "DELTA_GRPC" in result.stdout and "cluster: l4" in result.stdout


def test_envoy_bootstrap_refuses_a_bad_xds_address() -> None:
    result = controlplane("envoy-bootstrap", "--node-id", "n", "--xds", "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip() == "--xds: expected 'host:port'"


@pytest.mark.parametrize("proxy", ["envoy", "haproxy"])
def test_render_refuses_an_unknown_group(proxy: str, tmp_path: Path) -> None:
    example = str(ROOT / "examples" / "two-tier.yaml")
    output = ["-o", str(tmp_path)] if proxy == "haproxy" else []
    result = controlplane("render", proxy, example, "--group", "l9", *output)
    assert result.returncode == 2
    assert result.stderr.strip() == f"{example}: no node group named 'l9' (groups: l4, l7)"


def test_render_haproxy_sets_the_threads_it_is_told(tmp_path: Path) -> None:
    example = str(ROOT / "examples" / "quickstart.yaml")
    assert controlplane("render", "haproxy", example, "-o", str(tmp_path / "a")).returncode == 0
    assert "\n    nbthread 1\n" in (tmp_path / "a" / "haproxy.cfg").read_text()
    four = controlplane(
        "render", "haproxy", example, "-o", str(tmp_path / "b"), "--haproxy-threads", "4"
    )
    assert four.returncode == 0
    assert "\n    nbthread 4\n" in (tmp_path / "b" / "haproxy.cfg").read_text()
    refused = controlplane(
        "render", "haproxy", example, "-o", str(tmp_path / "c"), "--haproxy-threads", "0"
    )
    assert refused.returncode == 2


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--xds", "0.0.0.0:18000"], "plain-text xDS on 0.0.0.0 would hand every private key"),
        (["--xds", "10.1.2.3:18000"], "--xds-tls-cert, --xds-tls-key and --xds-client-ca, or"),
        (["--xds-tls-cert", "x.crt"], "--xds-tls-cert, --xds-tls-key and --xds-client-ca go"),
        (["--api-tls-key", "x.key"], "--api-tls-cert and --api-tls-key go together"),
        (
            [
                "--api-tls-cert",
                str(ROOT / "tests/certs/example.com.crt"),
                "--api-tls-key",
                str(ROOT / "tests/certs/other.test.key"),
            ],
            "--api-tls-cert/--api-tls-key: ",
        ),
    ],
)
def test_serve_refuses_an_insecure_or_broken_transport(
    tmp_path: Path, args: list[str], problem: str
) -> None:
    db = tmp_path / "cp.db"
    result = controlplane("serve", "--db", str(db), "--api", "127.0.0.1:0", *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], lines
    assert not db.exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--xds-ca", "ca.crt"], "--xds-ca, --tls-cert and --tls-key go together"),
        (["--tls-cert", "a", "--tls-key", "b"], "--xds-ca, --tls-cert and --tls-key go together"),
    ],
)
def test_envoy_bootstrap_refuses_incomplete_tls(args: list[str], problem: str) -> None:
    result = controlplane("envoy-bootstrap", "--node-id", "n", "--xds", "127.0.0.1:1", *args)
    assert result.returncode == 2
    assert problem in result.stderr.splitlines()[0], result.stderr


def test_envoy_bootstrap_names_tls_files_of_the_envoys_own_host() -> None:
    files = ["/etc/envoy/tls/ca.crt", "/etc/envoy/tls/node.crt", "/etc/envoy/tls/node.key"]
    flags = [
        x for pair in zip(["--xds-ca", "--tls-cert", "--tls-key"], files, strict=True) for x in pair
    ]
    result = controlplane("envoy-bootstrap", "--node-id", "n", "--xds", "127.0.0.1:1", *flags)
    assert result.returncode == 0, result.stderr
    assert all(f"filename: {path}" in result.stdout for path in files)


def test_status_with_a_ca_file_that_does_not_load_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "ca.crt"
    result = controlplane("status", "--server", "https://127.0.0.1:1", "--ca", str(missing))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"--ca {missing}: No such file or directory"]


def test_explain_prints_each_step_of_the_decision() -> None:
    result = controlplane(
        "explain", str(ROOT / "examples/quickstart.yaml"), "--listener", "web", "--path", "/api/v1"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "host       site (domain *: any)"
    assert lines[2].startswith(
        "route      api (listeners[0].virtual_hosts[0].routes[0]; prefix /api"
    )
    assert lines[3] == "  not      default: matches too, but a longer prefix comes first"
    assert "backend    api-canary 10% (round_robin: 127.0.0.1:18082 100%)" in lines
    assert any(line.startswith("envoy      listener web;") for line in lines)
    assert any("route site/api;" in line for line in lines if line.startswith("haproxy"))


def test_explain_json_is_the_decision_for_machines() -> None:
    result = controlplane(
        "explain",
        str(ROOT / "examples/nginx-article.yaml"),
        "--listener",
        "https",
        "--sni",
        "www.example.com",
        "--path",
        "/static/app.css",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tls"]["server_name"] == "*.example.com"
    assert data["route"]["key"] == "static"
    assert data["names"]["envoy"]["filter_chain"] == "certificate-0"
    assert data["names"]["haproxy"]["backends"][0]["backend"] == "static-servers"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listener", "nope"], "explain: listener: no listener named 'nope' (listeners: web)"),
        (["--listener", "web", "--header", "novalue"], "--header 'novalue': expected NAME=VALUE"),
        (["--listener", "web", "--path", "x"], "explain: path: a path is '/' then visible ASCII"),
        ([], "explain: --listener is required"),
    ],
)
def test_explain_refuses_a_bad_request_with_exit_2(args: list[str], message: str) -> None:
    result = controlplane("explain", str(ROOT / "examples/quickstart.yaml"), *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_advise_the_articles_nginx_example() -> None:
    result = controlplane("advise", str(ROOT / "examples/nginx-article.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "listener https (https, L7): L7 is needed for: URL routing, TLS termination"
    assert any(line.startswith("two tiers: fits: an L4 tier") for line in lines)
    assert "  group l4: https-edge" in lines and "  group l7: https" in lines
    assert any("recorded run, docs/l4-vs-l7.md" in line for line in lines)


def test_advise_json_cites_the_measured_figures_it_is_given(tmp_path: Path) -> None:
    recorded = json.loads((ROOT / "controlplane/bench/recorded-l4-vs-l7.json").read_text())
    recorded["results"]["haproxy-tcp"]["keepalive_rps"] = 123456.0
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(recorded))
    config = tmp_path / "plain.yaml"
    config.write_text(
        "listeners: [{name: web, address: 127.0.0.1:8080, protocol: http, virtual_hosts: "
        "[{name: all, domains: ['*'], routes: [{backends: [{cluster: app}]}]}]}]\n"
        "clusters: [{name: app, endpoints: [{address: 127.0.0.1:9000}]}]\n"
    )
    result = controlplane("advise", str(config), "--json", "--measured", str(mine))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["listeners"][0]["could_run_at_l4"] is True
    [haproxy, _envoy] = data["measured"]
    assert haproxy["keepalive_rps"]["tcp"] == 123456.0
    text = controlplane("advise", str(config), "--measured", str(mine)).stdout
    assert "saves      haproxy tcp vs http, 1 worker (measured here, mine.json): 123,456" in text


def test_advise_explains_l7_asked_of_a_passthrough_listener_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "pass.yaml"
    config.write_text(
        "listeners: [{name: pass, address: 127.0.0.1:443, protocol: tls, default_cluster: app,"
        " virtual_hosts: [{name: v, domains: ['*'], routes: [{backends: [{cluster: app}]}]}]}]\n"
        "clusters: [{name: app, protocol: tcp, endpoints: [{address: 127.0.0.1:9000}]}]\n"
    )
    result = controlplane("advise", str(config))
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{config}: trap l7-asked-of-l4 at listeners[0]: a tls listener")
    assert "Traceback" not in result.stderr


def test_explain_lists_the_firewall_rules_a_request_meets() -> None:
    example = str(ROOT / "examples/firewall.yaml")
    shop = ["explain", example, "--listener", "shop", "--host", "shop.example.com"]
    scanner = controlplane(*shop, "--header", "User-Agent=sqlmap/1.7", "--path", "/a.EXE")
    assert scanner.returncode == 0, scanner.stderr
    assert (
        "answer     403 refused: the firewall blocks it (rules: user_agents, file_extensions)"
        in (scanner.stdout.splitlines())
    )
    sqli = controlplane(*shop, "--path", "/products?id=1'%20OR%20'1'='1").stdout.splitlines()
    assert "policy     firewall: no L7 rule matches" in sqli
    assert any(line.startswith("policy     crs: OWASP CRS at paranoia level 1") for line in sqli)
    refused = controlplane(*shop, "--client-ip", "2001:db8::7").stdout.splitlines()
    assert refused[1] == (
        "answer     closed: address rules refuse the client: 2001:db8::7 is in deny 2001:db8::/32"
    )


def test_advise_says_address_rules_run_at_l4_and_the_firewall_needs_l7() -> None:
    lines = controlplane("advise", str(ROOT / "examples/firewall.yaml")).stdout.splitlines()
    assert "  at L4 too address rules: allow 2 range(s) at listeners[1].addresses" in lines
    assert lines[0].endswith("L7 firewall rules, CRS inspection")
