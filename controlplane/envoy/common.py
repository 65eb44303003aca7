"""Small building blocks shared by the Envoy translators: durations, ADS sources, extensions."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.core.v3 import address_pb2, config_source_pb2, extension_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from ..model import HashOn, split_address

Affinities = Mapping[str, HashOn | None]
"""What listeners and routes read of the clusters they send to: the group's clusters by name,
each with how it keeps a client on one endpoint (its `hash_on`). Nothing else of a cluster
shapes a listener or a route, so a change of endpoints recompiles neither."""


def duration(ms: int) -> duration_pb2.Duration:
    """A protobuf Duration of `ms` milliseconds."""
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def packed(message: Message) -> any_pb2.Any:
    """`message` wrapped in an Any (deterministic bytes, so resources hash stably)."""
    wrapped = any_pb2.Any()
    wrapped.Pack(message, deterministic=True)
    return wrapped


def extension(name: str, message: Message) -> extension_pb2.TypedExtensionConfig:
    """A named extension configured by `message`."""
    return extension_pb2.TypedExtensionConfig(name=name, typed_config=packed(message))


def ads_source() -> config_source_pb2.ConfigSource:
    """Where a resource refers to another one: the same ADS stream, API v3."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def socket_address(address: str) -> address_pb2.Address:
    """An Address for a validated `host:port` or `[ipv6]:port`."""
    host, port = split_address(address)
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )
