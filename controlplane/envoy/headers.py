"""Header mutations: remove, then set (replace or create), then add (append)."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2

from ..model import HeaderMutation

_SET = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_ADD = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _option(name: str, value: str, action: int) -> base_pb2.HeaderValueOption:
    # Envoy drops headers whose value is empty unless told to keep them.
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=action,
        keep_empty_value=value == "",
    )


def set_header(name: str, value: str) -> base_pb2.HeaderValueOption:
    """Replace header `name` with `value`, creating it when absent."""
    return _option(name, value, _SET)


HOST = "host"
"""Envoy refuses to mutate Host as a header; a request's Host is set by a host rewrite."""


def header_options(
    mutation: HeaderMutation, *, request: bool
) -> Iterable[base_pb2.HeaderValueOption]:
    """The sets, then the adds, of `mutation` (Envoy applies removals before both and
    overwrites before appends); a request's Host is set by the route's host rewrite instead."""
    for name, value in mutation.set.items():
        if not (request and name == HOST):
            yield set_header(name, value)
    for name, value in mutation.add.items():
        yield _option(name, value, _ADD)
