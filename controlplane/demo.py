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
from pathlib import Path

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


def _instructions(listen_port: int, shop_port: int) -> str:
    envoy = f"http://127.0.0.1:{listen_port}"
    haproxy = f"http://{HAPROXY_HOST}:{listen_port}"
    shop_envoy = f"http://127.0.0.1:{shop_port}"
    shop_haproxy = f"http://{HAPROXY_HOST}:{shop_port}"
    attack = "-G --data-urlencode \"id=1' OR '1'='1\""
    return f"""
controlplane is running (Ctrl-C stops everything):
  REST API   http://{API}   (docs: http://{API}/docs)     xDS  {XDS}
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
  curl -s -o /dev/null -w '%{{http_code}}\\n' {attack} {shop_envoy}/products
  curl -s -o /dev/null -w '%{{http_code}}\\n' {attack} {shop_haproxy}/products
  curl -s -o /dev/null -w '%{{http_code}}\\n' "{shop_envoy}/products?id=1"     # -> 200
  curl -s -o /dev/null -w '%{{http_code}}\\n' -A sqlmap/1.7 {shop_haproxy}/      # -> 403

Who runs what, and a change pushed to both proxies:
  curl -s http://{API}/v1/status
  .venv/bin/controlplane apply examples/quickstart.yaml --server http://{API}

Rate limits (examples/rate-limits.yaml: 10/s per x-user on /api/search, healthcheck unlimited;
30 requests at once from alice: 10 pass, then 429 on each proxy, which counts on its own):
  .venv/bin/controlplane apply examples/rate-limits.yaml --server http://{API}
  for i in $(seq 30); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'x-user: alice' \\
    {envoy}/api/search; done; echo
  curl -si -H 'x-user: alice' {haproxy}/api/search | grep -i -e ^http -e ratelimit -e retry-after
"""


async def _main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    RUN.mkdir(exist_ok=True)
    config = demo_config()
    seed = RUN / "demo.yaml"
    seed.write_text(dump_yaml(config))
    (RUN / "demo.db").unlink(missing_ok=True)
    backends = []
    for cluster in config.clusters:
        for endpoint in cluster.endpoints:
            host, port = split_address(endpoint.address)
            backends.append(await start_backend(cluster.name, host, port))
    running = await start_server(
        ServeOptions(
            db=RUN / "demo.db",
            config=seed,
            api=API,
            xds=XDS,
            insecure_local=True,
            haproxy_groups=("default",),
            haproxy_bind=HAPROXY_HOST,
            workdir=RUN,
            waf=WAF,
        )
    )
    envoy = EnvoyProcess(RUN, "demo-envoy", "default", running.xds.port or 0, log_level="error")
    try:
        await asyncio.to_thread(envoy.start)
        await _converged(running)
        ports = [split_address(x.address)[1] for x in config.listeners]
        print(_instructions(ports[0], ports[-1]), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print("stopping...")
    finally:
        envoy.stop()
        await running.stop()
        for server in backends:
            server.close()


def main() -> None:
    """Run the demo until Ctrl-C; a port in use or a proxy that does not come up is one line."""
    try:
        asyncio.run(_main())
    except (ServeError, OSError, TimeoutError, RuntimeError) as exc:
        raise SystemExit(f"make run: {exc}") from None


if __name__ == "__main__":
    main()
