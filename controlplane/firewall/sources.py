"""The firewall's Lua sources as each proxy loads them: the shared core (`lua/core.lua`) bound
to the name `firewall`, then the proxy's adapter. Package data, the same for every config."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from ..model.kinds import ProxyKind


def _read(name: str) -> str:
    return files(__package__).joinpath("lua", name).read_text(encoding="utf-8")


@cache
def lua_source(proxy: ProxyKind) -> str:
    """The one Lua chunk `proxy` runs: the core as `firewall`, then its adapter."""
    return f"local firewall = (function()\n{_read('core.lua')}end)()\n\n{_read(proxy + '.lua')}"
