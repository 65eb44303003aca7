"""`controlplane lab up|down|status`: the compose file in `compose/`, run and waited for.

`up` makes the lab's secrets (`compose/certs.sh`), builds the images offline when they are
missing (`compose/build-images.sh`, cached by content), picks free ports on 127.0.0.1 for the
published entries, starts the compose project, waits until every proxy runs the head revision
and each L4 entry reaches every L7 proxy, then prints the URLs and curls to try. What it chose
is kept in the state directory (`run/lab/` by default: `lab.env` and `secrets/`), so a second
`up` reuses it. `down` removes the project's containers, network and volumes, and the state
directory; images stay, cached.

Compose is `docker-compose` (v1) when installed, else `docker compose` (v2); `CP_LAB_COMPOSE`
names another. Docker is whatever `DOCKER_HOST` points at.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..client import ApiClient, ServerUnreachable, status_table
from ..ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DEFAULT_STATE = ROOT / "run" / "lab"
DEFAULT_PROJECT = "controlplane-lab"

PROXIES = ("l4-haproxy", "l4-envoy", "l7-envoy-1", "l7-envoy-2", "l7-haproxy-1", "l7-haproxy-2")
"""Every proxy of the lab, by the id it reports under."""
PORTS = {
    "CP_LAB_API_PORT": "the REST API",
    "CP_LAB_HTTP_PORT": "the L4 HAProxy",
    "CP_LAB_ENVOY_L4_PORT": "the L4 Envoy",
}
"""The published ports: variable of the compose file, and what listens behind it."""

Echo = Callable[[str], None]


class LabError(Exception):
    """The lab cannot do what was asked; the message says why, in one line."""


@dataclass(frozen=True)
class Lab:
    """One lab: its compose project name and the directory holding its choices and secrets."""

    state: Path = DEFAULT_STATE
    project: str = DEFAULT_PROJECT

    @property
    def env_file(self) -> Path:
        return self.state / "lab.env"

    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    def settings(self) -> dict[str, str]:
        """What `up` chose (images, ports, secrets), empty before the first `up`."""
        if not self.env_file.exists():
            return {}
        return _env_pairs(self.env_file.read_text())

    def admin_token(self) -> str:
        return (self.secrets / "admin.token").read_text().strip()

    def api_url(self) -> str:
        """The API's published URL: https when the compose file's `x-security` says so."""
        scheme = str(_security()["api-url"]).split("://", 1)[0]
        return f"{scheme}://127.0.0.1:{self.settings()['CP_LAB_API_PORT']}"

    def api_client(self) -> ApiClient:
        """The lab's API as its admin."""
        return ApiClient(
            self.api_url(), self.admin_token(), timeout=5, ca=str(self.secrets / "ca.crt")
        )

    def compose(self, *args: str, capture: bool = False) -> str:
        """Run compose on the lab's project with its settings; its output when `capture`."""
        command = [*compose_command(), "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        env = {**os.environ, **self.settings(), "CP_LAB_SECRETS": str(self.secrets)}
        done = subprocess.run(
            command,
            env=env,
            cwd=COMPOSE_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=capture,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] if capture else []
            reason = tail[0] if tail else f"exit {done.returncode}; see its output above"
            raise LabError(f"compose {args[0]} failed ({reason})")
        return done.stdout or ""


def _security() -> dict[str, Any]:
    """The compose file's `x-security` block: the one place where the lab's TLS is set."""
    return dict(yaml.safe_load(COMPOSE_FILE.read_text())["x-security"])


def _env_pairs(text: str) -> dict[str, str]:
    """The KEY=VALUE lines of an env file."""
    pairs = (line.partition("=") for line in text.splitlines())
    return {key: value for key, sep, value in pairs if sep and key}


def run(action: Callable[[], bool | None], echo_err: Echo) -> int:
    """Exit code of a lab command: 0 done, 1 when it failed (`LabError`, said in one line) or
    when it answered False (`status` with a proxy not current)."""
    try:
        ok = action()
    except LabError as exc:
        echo_err(f"lab: {exc}")
        return 1
    return 1 if ok is False else 0


def compose_command() -> list[str]:
    """How to run compose here: CP_LAB_COMPOSE, `docker-compose` (v1) or `docker compose`."""
    chosen = os.environ.get("CP_LAB_COMPOSE")
    if chosen:
        return shlex.split(chosen)
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        return ["docker", "compose"]
    raise LabError("no docker-compose or docker command found (apt-get install docker-compose)")


def _run_script(name: str, *args: str) -> str:
    try:
        done = subprocess.run(
            [str(COMPOSE_DIR / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise LabError(f"compose/{name}: {exc.strerror}") from None
    if done.returncode != 0:
        raise LabError(f"compose/{name} failed (exit {done.returncode}); see its output above")
    return done.stdout


def prepare(lab: Lab, echo: Echo, registry: bool = False) -> dict[str, str]:
    """Make the secrets, build the images offline (unless `registry`: then compose pulls and
    builds them) and choose the ports, keeping what an earlier `up` chose; returns the
    settings, also written to `lab.env`."""
    settings = lab.settings()
    _run_script("certs.sh", str(lab.secrets))
    if not registry:
        echo("images: compose/build-images.sh (offline; cached by content)")
        began = time.monotonic()
        built = _run_script("build-images.sh")
        settings.update(_env_pairs(built))
        echo(f"images: ready in {time.monotonic() - began:.1f}s")
    for variable in PORTS:
        settings.setdefault(variable, str(free_port()))
    lab.state.mkdir(parents=True, exist_ok=True)
    lab.env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return settings


def up(lab: Lab, echo: Echo, *, registry: bool = False, timeout: float = 180) -> None:
    """Start the lab and wait until every proxy runs the head revision. With `registry`, the
    images are the compose file's (official images pulled, the project image built online)."""
    began = time.monotonic()
    prepare(lab, echo, registry)
    echo(f"starting compose project {lab.project}")
    if registry:
        lab.compose("build")
    lab.compose("up", "-d", "--no-build", "--remove-orphans")
    deadline = time.monotonic() + timeout
    wait_converged(lab, echo, timeout)
    wait_serving(lab, echo, deadline - time.monotonic())
    echo(f"the lab is up in {time.monotonic() - began:.1f}s\n")
    echo(instructions(lab))


def wait_converged(
    lab: Lab, echo: Echo, timeout: float, proxies: Sequence[str] = PROXIES
) -> dict[str, Any]:
    """Wait until each of `proxies` reports the head revision; the status it reached."""
    api = lab.api_client()
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        try:
            reply = api.request("GET", "/v1/status")
            data = reply.data if reply.status == 200 and isinstance(reply.data, dict) else {}
        except ServerUnreachable:
            data = {}
        current = {p["id"] for p in data.get("proxies", []) if p.get("current")}
        waiting = [proxy for proxy in proxies if proxy not in current]
        line = (
            f"revision {data.get('revision')}: {len(proxies) - len(waiting)}/{len(proxies)} "
            f"proxies current" + (f", waiting for {', '.join(waiting)}" if waiting else "")
            if data
            else "waiting for the API"
        )
        if line != said:
            echo(line)
            said = line
        if not waiting:
            return data
        if time.monotonic() > deadline:
            raise LabError(f"not converged after {timeout:.0f}s: {line}")
        time.sleep(0.5)


def wait_serving(lab: Lab, echo: Echo, timeout: float) -> None:
    """Wait until requests through each published L4 entry reach every L7 proxy of the
    `l7-fleet` cluster (each L4 proxy's health check has found them all up)."""
    reply = lab.api_client().request("GET", "/v1/clusters/l7-fleet")
    if reply.status != 200:
        raise LabError(f"/v1/clusters/l7-fleet answered {reply.status}: {reply.error}")
    fleet = {e["address"].rsplit(":", 1)[0] for e in reply.data["endpoints"]}
    deadline = time.monotonic() + timeout
    for variable in ("CP_LAB_HTTP_PORT", "CP_LAB_ENVOY_L4_PORT"):
        url = f"http://127.0.0.1:{lab.settings()[variable]}/"
        seen: set[str] = set()
        while not fleet <= seen:
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(fleet - seen))
                raise LabError(f"{PORTS[variable]} at {url} never reached {missing}")
            peer = _peer_of(url)
            if peer is None:
                time.sleep(0.2)
            else:
                seen.add(peer)
        echo(f"{PORTS[variable]}: every L7 proxy answers ({len(fleet)})")


def _peer_of(url: str) -> str | None:
    """The address of the L7 proxy that relayed a request to `url`, as the backend saw it."""
    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.loads(response.read())["peer"]).rsplit(":", 1)[0]
    except (OSError, ValueError, KeyError):
        return None


def down(lab: Lab, echo: Echo) -> None:
    """Remove the lab's containers, network and volumes, and its state directory."""
    echo(f"removing compose project {lab.project}")
    lab.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")
    shutil.rmtree(lab.state, ignore_errors=True)


def status(lab: Lab, echo: Echo) -> bool:
    """Print the containers and the fleet; True when every proxy runs the head revision."""
    if not lab.settings():
        raise LabError(f"no lab in {lab.state} (run `controlplane lab up`)")
    echo(lab.compose("ps", capture=True).rstrip())
    try:
        reply = lab.api_client().request("GET", "/v1/status")
    except ServerUnreachable as exc:
        raise LabError(f"the API does not answer: {exc}") from None
    if reply.status != 200 or not isinstance(reply.data, dict):
        raise LabError(f"/v1/status answered {reply.status}: {reply.error}")
    echo("")
    for line in status_table(reply.data):
        echo(line)
    current = {p["id"] for p in reply.data.get("proxies", []) if p.get("current")}
    return all(proxy in current for proxy in PROXIES)


def instructions(lab: Lab) -> str:
    """The URLs of a running lab and a few curls to try."""
    settings = lab.settings()
    http = f"http://127.0.0.1:{settings['CP_LAB_HTTP_PORT']}"
    envoy = f"http://127.0.0.1:{settings['CP_LAB_ENVOY_L4_PORT']}"
    api = lab.api_url()
    token = shlex.quote(str(lab.secrets / "admin.token"))
    cacert = (
        f" --cacert {shlex.quote(str(lab.secrets / 'ca.crt'))}" if api.startswith("https") else ""
    )
    half = {"backends": [{"cluster": "api", "weight": 50}, {"cluster": "api-canary", "weight": 50}]}
    routing = _commented(
        [
            (f"curl -s {http}/api/users", "api-1 or api-2, 10% api-canary"),
            (f"curl -s -H 'x-canary: always' {http}/api/users", "api-canary"),
            (f"curl -s -b canary=1 {http}/api/users", "api-canary"),
            (f"curl -s {envoy}/", "web-1, through the L4 Envoy"),
            (f"for i in $(seq 8); do curl -s {http}/ | grep peer; done", "each L7 proxy in turn"),
        ]
    )
    return f"""\
The lab (compose project {lab.project}; state in {lab.state}):
  L4 HAProxy  {http}   the L4 tier, in front of 2 Envoys and 2 HAProxys
  L4 Envoy    {envoy}   the same L4 tier on an Envoy tcp_proxy
  REST API    {api}   token in {token}

Routing by path, header and cookie ("peer" is the L7 proxy that relayed the request):
{routing}

The fleet, and a change pushed to every proxy:
  export CONTROLPLANE_SERVER={api} CONTROLPLANE_TOKEN=$(cat {token})
  .venv/bin/controlplane status
  curl -s{cacert} -H "Authorization: Bearer $CONTROLPLANE_TOKEN" -X PATCH \\
       -H 'Content-Type: application/merge-patch+json' -d '{json.dumps(half)}' \\
       {api}/v1/listeners/web/virtual_hosts/app/routes/api

Everything goes with: .venv/bin/controlplane lab down
"""


def _commented(commands: list[tuple[str, str]]) -> str:
    width = max(len(command) for command, _ in commands)
    return "\n".join(f"  {command.ljust(width)}  # {why}" for command, why in commands)
