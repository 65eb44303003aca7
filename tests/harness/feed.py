"""Giving the agents' feed a whole config, as the product's HAProxy plane does for `serve`."""

from __future__ import annotations

from controlplane.feed.bundles import GroupBundles
from controlplane.fleet import HAProxyPlane
from controlplane.model import Config


def publish(feed: GroupBundles, revision: int, config: Config) -> None:
    """Render every group of `config` and make it what the group's agents follow."""
    plane = HAProxyPlane(feed)
    builds = {group: plane.compile(config, group) for group in config.group_names()}
    plane.publish(revision, builds, frozenset())
