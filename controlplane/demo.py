"""`make run`: the control plane with a real Envoy, a real HAProxy and demo backends.

Serves examples/quickstart.yaml and the `shop` listener of examples/firewall.yaml (address
rules, L7 rules and OWASP CRS inspection by the verdict service `serve` starts) from a SQLite
store in ./run, made anew on each run: Envoy (fed over xDS) on the config's own addresses,
HAProxy (rendered, managed) on the same ports of 127.0.0.2, and the backends the config names,
each answering with its name. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .demo_backends import start_backend
from .model import Config, dump_yaml, load_file, parse_config, referenced_clusters, split_address
from .proxies.envoy import EnvoyProcess
from .serve import Running, ServeError, ServeOptions, start_server

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
FIREWALL = ROOT / "examples" / "firewall.yaml"
RUN = ROOT / "run"
WAF = "127.0.0.1:9470"
API = "127.0.0.1:8080"
XDS = "127.0.0.1:18000"
HAPROXY_HOST = "127.0.0.2"


async def _converged(running: Running, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = running.store.head()
        records = running.status.proxies()
        if head and len(records) >= 2 and all(r.runs(head.number) for r in records):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the proxies did not report the head revision in time")


def demo_config() -> Config:
    """The quickstart and the firewall example's `shop` listener with the cluster it uses."""
    quickstart, firewall = load_file(QUICKSTART), load_file(FIREWALL)
    shop = next(x for x in firewall.listeners if x.name == "shop")
    used = set(referenced_clusters(shop))
    return parse_config(
        {
            "listeners": [x.model_dump() for x in (*quickstart.listeners, shop)],
            "clusters": [
                c.model_dump()
                for c in (*quickstart.clusters, *(c for c in firewall.clusters if c.name in used))
            ],
        }
    )


@dataclass(frozen=True)
class DemoOptions:
    """Where the demo runs: its directory, the API, xDS and verdict service addresses, and
    the loopback address HAProxy binds the config's ports on."""

    run: Path = RUN
    api: str = API
    xds: str = XDS
    waf: str = WAF
    haproxy_host: str = HAPROXY_HOST


def _asking(config: Config, verdicts: str) -> Config:
    """`config` with every crs asking the verdict service at `verdicts`."""

    def moved(data: Any) -> Any:
        if isinstance(data, dict):
            return {
                key: {**value, "service": verdicts} if key == "crs" and value else moved(value)
                for key, value in data.items()
            }
        if isinstance(data, list):
            return [moved(item) for item in data]
        return data

    return parse_config(moved(config.model_dump()))


def _instructions(options: DemoOptions, listen_port: int, shop_port: int) -> str:
    envoy = f"http://127.0.0.1:{listen_port}"
    haproxy = f"http://{options.haproxy_host}:{listen_port}"
    shop_envoy = f"http://127.0.0.1:{shop_port}"
    shop_haproxy = f"http://{options.haproxy_host}:{shop_port}"
    attack = "-G --data-urlencode \"id=1' OR '1'='1\""
    return f"""
controlplane is running (Ctrl-C stops everything):
  REST API   http://{options.api}   (docs: http://{options.api}/docs)     xDS  {options.xds}
  Envoy      {envoy}      (fed over xDS)
  HAProxy    {haproxy}      (rendered config, hitless reloads)

Path routing (same answer from both proxies):
  curl -s {envoy}/api/users | grep backend
  curl -s {haproxy}/api/users | grep backend
  curl -s {envoy}/index.html | grep backend            # -> web

The 10% canary (count which backend answered /api over 200 requests):
  for i in $(seq 200); do curl -s -o /dev/null -w '%{{header_json}}\\n' {envoy}/api/x; done \\
    | grep -o '"x-backend":\\["[a-z-]*' | sort | uniq -c

The firewall (examples/firewall.yaml): SQL injection refused by the OWASP CRS, 403 from both:
  curl -s -o /dev/null -w '%{{http_code}}\\n' {attack} {shop_envoy}/products     # -> 403
  curl -s -o /dev/null -w '%{{http_code}}\\n' {attack} {shop_haproxy}/products   # -> 403
  curl -s -o /dev/null -w '%{{http_code}}\\n' "{shop_envoy}/products?id=1"     # -> 200
  curl -s -o /dev/null -w '%{{http_code}}\\n' "{shop_haproxy}/products?id=1"   # -> 200
  curl -s -o /dev/null -w '%{{http_code}}\\n' -A sqlmap/1.7 {shop_haproxy}/      # -> 403

Who runs what, and a change pushed to both proxies:
  curl -s http://{options.api}/v1/status
  .venv/bin/controlplane apply examples/quickstart.yaml --server http://{options.api}

Rate limits (examples/rate-limits.yaml: 10/s per x-user on /api/search, healthcheck unlimited;
30 requests at once from alice: 10 pass, then 429 on each proxy, which counts on its own):
  .venv/bin/controlplane apply examples/rate-limits.yaml --server http://{options.api}
  for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'x-user: alice' \\
    {envoy}/api/search; done; echo
  curl -si -H 'x-user: alice' {haproxy}/api/search | grep -i -e ^http -e ratelimit -e retry-after
"""


@dataclass
class Demo:
    """A running demo: what to try (`instructions`), and `stop`."""

    instructions: str
    _envoy: EnvoyProcess
    _running: Running
    _backends: list[asyncio.Server]

    async def stop(self) -> None:
        """Stop Envoy, the server (HAProxy, the verdict service) and the backends."""
        await asyncio.to_thread(self._envoy.stop)
        await self._running.stop()
        for server in self._backends:
            server.close()


async def start_demo(config: Config, options: DemoOptions) -> Demo:
    """Serve `config` (the quickstart's listener first, the shop's last) from a store made
    anew in `options.run`, with its backends, the verdict service (every crs of `config` asks
    it), a local HAProxy and an Envoy fed over xDS; return once both proxies run it."""
    config = _asking(config, options.waf)
    options.run.mkdir(parents=True, exist_ok=True)
    seed = options.run / "demo.yaml"
    seed.write_text(dump_yaml(config))
    (options.run / "demo.db").unlink(missing_ok=True)
    backends = []
    try:
        for cluster in config.clusters:
            for endpoint in cluster.endpoints:
                host, port = split_address(endpoint.address)
                backends.append(await start_backend(cluster.name, host, port))
        running = await start_server(
            ServeOptions(
                db=options.run / "demo.db",
                config=seed,
                api=options.api,
                xds=options.xds,
                insecure_local=True,
                haproxy_groups=("default",),
                haproxy_bind=options.haproxy_host,
                workdir=options.run,
                waf=options.waf,
            )
        )
    except BaseException:
        for server in backends:
            server.close()
        raise
    envoy = EnvoyProcess(
        options.run, "demo-envoy", "default", running.xds.port or 0, log_level="error"
    )
    demo = Demo("", envoy, running, backends)
    try:
        await asyncio.to_thread(envoy.start)
        await _converged(running)
    except BaseException:
        await demo.stop()
        raise
    ports = [split_address(x.address)[1] for x in config.listeners]
    demo.instructions = _instructions(options, ports[0], ports[-1])
    return demo


async def _main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    demo = await start_demo(demo_config(), DemoOptions())
    try:
        print(demo.instructions, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print("stopping...")
    finally:
        await demo.stop()


def main() -> None:
    """Run the demo until Ctrl-C; a port in use or a proxy that does not come up is one line."""
    try:
        asyncio.run(_main())
    except (ServeError, OSError, TimeoutError, RuntimeError) as exc:
        raise SystemExit(f"make run: {exc}") from None


if __name__ == "__main__":
    main()
