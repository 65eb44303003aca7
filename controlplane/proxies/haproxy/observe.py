"""What a running HAProxy holds, read through its runtime API, to compare with the bundle it
was given: the server table (`show servers state`) and every map (`show map`), with the version
its manager started it on and the configuration on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .manager import CONFIG_FILE, HAProxyManager


@dataclass(frozen=True)
class Observed:
    """An HAProxy as it runs: `version` is the bundle its manager last applied (None when it
    does not run one), `cfg` the configuration file on disk, `servers` each backend's servers
    as (name, address, port, weight) and `maps` each loaded map file's entries, in order."""

    version: str | None
    cfg: str | None
    servers: dict[str, list[tuple[str, str, int, int]]] = field(default_factory=dict)
    maps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def observe(manager: HAProxyManager) -> Observed:
    """Read what `manager`'s HAProxy runs (OSError or a runtime CommandError when it cannot)."""
    current = manager.current
    path = Path(manager.workdir) / CONFIG_FILE
    cfg = path.read_text() if path.exists() else None
    servers: dict[str, list[tuple[str, str, int, int]]] = {}
    for state in manager.runtime.show_servers_state():
        servers.setdefault(state.backend, []).append(
            (state.server, state.address, state.port, state.weight)
        )
    maps = {}
    for ref in manager.runtime.show_maps():
        entries = manager.runtime.show_map(f"#{ref.id}")
        maps[Path(ref.file).name] = [(e.key, e.value) for e in entries]
    return Observed(current.version if current else None, cfg, servers, maps)
