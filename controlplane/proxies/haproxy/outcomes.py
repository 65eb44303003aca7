"""What an HAProxy manager reports: how applying a bundle went, and what its supervisor saw.

These are value types shared by the manager, the agent that sends them to the control plane,
and the control plane's side that receives them (`controlplane.feed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ApplyMode = Literal["start", "runtime", "reload", "unchanged", "rejected"]
HealthState = Literal["down", "restarted", "restart failed"]


@dataclass(frozen=True)
class ApplyResult:
    """What happened when a bundle was applied.

    `mode` says how: "start" (HAProxy was started on it), "runtime" (runtime API, no reload),
    "reload", "unchanged" (that version already runs) or "rejected" (invalid; nothing changed).
    `reason` says why that mode was chosen; `error` carries HAProxy's own message when `ok` is
    false. `duration` is wall time in seconds.
    """

    version: str
    ok: bool
    mode: ApplyMode
    reason: str
    duration: float
    error: str | None = None


@dataclass(frozen=True)
class HealthEvent:
    """HAProxy died, or was started again, as the manager's supervisor saw it.

    `state` is "down" (`reason` says what died), "restarted" (it runs `version` again) or
    "restart failed" (`error` says why it does not start: HAProxy's message; another attempt
    follows); `reason` keeps saying what died. `at` is the wall-clock time (`time.time()`) it
    was seen.
    """

    state: HealthState
    version: str | None
    at: float
    reason: str
    error: str | None = None
