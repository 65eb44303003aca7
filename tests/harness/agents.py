"""An HAProxy agent (what `controlplane haproxy-agent` runs) in a thread of the test, of node
group `agents`, retrying fast; stopped with its HAProxy by `stop_agent`."""

from __future__ import annotations

import threading
from pathlib import Path

from controlplane.proxies.haproxy.agent import HAProxyAgent

RunningAgent = tuple[HAProxyAgent, threading.Thread]


def start_agent(servers: str, workdir: Path, instance_id: str, token: str) -> RunningAgent:
    """An agent polling `servers` (comma-separated API URLs, tried in turn) as `instance_id`
    with `token`, its HAProxy's files in `workdir`; the default poll (30 s)."""
    agent = HAProxyAgent(
        servers,
        "agents",
        workdir,
        haproxy_bin="/usr/sbin/haproxy",
        instance_id=instance_id,
        token=token,
        backoff_initial=0.05,
        backoff_max=0.5,
    )
    thread = threading.Thread(target=agent.run, name="haproxy-agent", daemon=True)
    thread.start()
    return agent, thread


def stop_agent(agent: HAProxyAgent, thread: threading.Thread) -> None:
    """Stop the agent's loop, then its HAProxy."""
    agent.stop()
    thread.join(60)
    agent.manager.stop()
    assert not thread.is_alive(), "the agent did not stop"
