"""What the agents' feed tells its observer: who polls, and what each agent's HAProxy did.

The feed keeps no record of its own (the fleet's ledger does); it asks its observer whether an
agent may speak for the instance id it names, and passes on what it hears.
"""

from __future__ import annotations

from typing import Protocol

from .wire import StatusReport


class AgentReports(Protocol):
    """An observer of the HAProxy agents' feed."""

    def refusal(self, instance: str, group: str) -> str | None:
        """Why an agent of `group` may not speak for `instance` (the id is another proxy's);
        None when it may."""
        ...

    def polling(self, instance: str, group: str, running: str | None) -> None:
        """An agent of `group` asks for its bundle (until `polled`), its HAProxy running
        `running` (None: nothing yet)."""
        ...

    def polled(self, instance: str) -> None:
        """A poll `polling` announced was answered, or its agent went away."""
        ...

    def reported(self, group: str, report: StatusReport) -> None:
        """An agent of `group` said what its HAProxy did: applied a version, or died and was
        restarted."""
        ...
