"""The seam between the store and the proxies: every new head revision is published."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from ..model import Config
from ..store import Store

log = logging.getLogger(__name__)


class Propagator(Protocol):
    """Takes a committed revision to the proxies (xDS snapshots, HAProxy managers and agents).

    `publish` is called for each new head (and at start with the head), in increasing
    revision order, from the thread that committed; it should hand the work off quickly.
    Several quick revisions may arrive as just the newest; a revision may come twice.
    """

    def publish(self, revision: int, config: Config) -> None: ...


class NullPropagator:
    """Publishes nowhere: an API without proxies (tests, a read-only replica)."""

    def publish(self, revision: int, config: Config) -> None:
        return None


class RecordingPropagator:
    """Remembers what it was asked to publish (tests)."""

    def __init__(self) -> None:
        self.published: list[tuple[int, Config]] = []

    def publish(self, revision: int, config: Config) -> None:
        self.published.append((revision, config))


def follow(store: Store, propagator: Propagator) -> Callable[[], None]:
    """Publish the current head, then every new one; returns the function that stops it."""

    def on_revision(number: int) -> None:
        try:
            propagator.publish(number, store.get(number).config)
        except Exception:
            log.exception("publishing revision %d failed", number)

    unsubscribe = store.subscribe(on_revision)
    head = store.head()
    if head is not None:
        on_revision(head.number)
    return unsubscribe
