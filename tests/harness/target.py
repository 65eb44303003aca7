"""What the scenario runner needs of a proxy under test: start it, give it a config, stop it."""

from __future__ import annotations

from typing import Protocol

from controlplane.model import Config


class Target(Protocol):
    """A real proxy fed by the product (Envoy over xDS, HAProxy by rendered config)."""

    name: str

    def start(self) -> None: ...

    def apply(self, config: Config, group: str) -> None:
        """Give the proxy `config`'s part for node group `group`; returns when it runs it."""
        ...

    def stop(self) -> None: ...
