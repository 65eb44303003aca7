"""Addressing one object of a config's plain data, and changing it there.

Kinds and their addresses:

- listener      `/v1/listeners/{listener}`
- virtual host  `/v1/listeners/{listener}/virtual_hosts/{vhost}`
- route         `/v1/listeners/{listener}/virtual_hosts/{vhost}/routes/{route}`
- cluster       `/v1/clusters/{cluster}` (endpoints are part of the cluster)
- node group    `/v1/node_groups/{group}`

Objects are addressed by name. A route may have no name; `@N` addresses the route at
position N of its virtual host (no name can start with `@`). Changes are made to plain
data (a full dump of the head config, `editable`); the caller validates the whole result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import Cluster, Listener, NodeGroup, Route, VirtualHost
from ..model.types import Model
from .errors import ApiError, bad_input, not_found

Data = dict[str, Any]
PathPart = str | int


@dataclass(frozen=True)
class Kind:
    """A kind of object: its name, the list field holding it, its model and its parents."""

    name: str
    field: str
    model: type[Model]
    parent: Kind | None = None

    @property
    def chain(self) -> tuple[Kind, ...]:
        """The kinds from the top of the config down to this one."""
        return (*self.parent.chain, self) if self.parent else (self,)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


LISTENER = Kind("listener", "listeners", Listener)
VIRTUAL_HOST = Kind("virtual_host", "virtual_hosts", VirtualHost, LISTENER)
ROUTE = Kind("route", "routes", Route, VIRTUAL_HOST)
CLUSTER = Kind("cluster", "clusters", Cluster)
NODE_GROUP = Kind("node_group", "node_groups", NodeGroup)
KINDS = (LISTENER, VIRTUAL_HOST, ROUTE, CLUSTER, NODE_GROUP)


def editable(data: Data) -> Data:
    """A copy of plain data that the changes here may be made to: every dict and list on the
    way to a kind's list is copied, the objects in those lists are shared. The changes here
    only insert, replace and remove objects of those lists (a merge patch makes a new
    object), so the data copied from stays as it was, and copying costs the containers on
    the way, not the objects (ten thousand routes are not copied to change one cluster)."""
    return _editable(data, [k for k in KINDS if k.parent is None])


def _editable(node: Data, kinds: list[Kind]) -> Data:
    copied = dict(node)
    for kind in kinds:
        items = copied.get(kind.field)
        if not isinstance(items, list):
            continue
        below = [k for k in KINDS if k.parent is kind]
        copied[kind.field] = [
            _editable(item, below) if below and isinstance(item, dict) else item for item in items
        ]
    return copied


@dataclass(frozen=True)
class Location:
    """Where a kind's list sits in the data, and its path in `format_path` parts."""

    items: list[Any]
    path: tuple[PathPart, ...]


def locate(data: Data, kind: Kind, parents: tuple[str, ...]) -> Location:
    """The list holding objects of `kind` under the named parents (404 when one is missing)."""
    node: Any = data
    path: tuple[PathPart, ...] = ()
    for level, key in zip(kind.chain[:-1], parents, strict=True):
        items = _list(node, level.field)
        index = find(items, key)
        if index is None:
            raise not_found(f"{level.label} {key!r}")
        node = items[index]
        path = (*path, level.field, index)
    return Location(_list(node, kind.field), (*path, kind.field))


def _list(node: Any, field: str) -> list[Any]:
    if not isinstance(node.get(field), list):
        node[field] = []
    items: list[Any] = node[field]
    return items


def find(items: list[Any], key: str) -> int | None:
    """The position of the object named `key` (or `@N`: position N), None when absent."""
    if key.startswith("@"):
        digits = key[1:]
        if digits.isdigit() and int(digits) < len(items):
            return int(digits)
        return None
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == key:
            return i
    return None


def get(data: Data, kind: Kind, parents: tuple[str, ...], key: str) -> tuple[Any, int]:
    """The object and its position (404 when absent)."""
    items = locate(data, kind, parents).items
    index = find(items, key)
    if index is None:
        raise not_found(f"{kind.label} {key!r}")
    return items[index], index


def create(
    data: Data, kind: Kind, parents: tuple[str, ...], body: Any, position: int | None = None
) -> int:
    """Insert a new object (at `position`, default last); its position. 409 when the name
    is taken."""
    _need_object(body)
    where = locate(data, kind, parents)
    name = body.get("name")
    if isinstance(name, str) and not name.startswith("@") and find(where.items, name) is not None:
        raise ApiError(409, f"a {kind.label} named {name!r} already exists")
    index = len(where.items) if position is None else min(max(position, 0), len(where.items))
    where.items.insert(index, body)
    return index


def replace(data: Data, kind: Kind, parents: tuple[str, ...], key: str, body: Any) -> int:
    """Replace an object whole; its position. A body without a name keeps the one in the URL."""
    _need_object(body)
    items = locate(data, kind, parents).items
    index = find(items, key)
    if index is None:
        raise not_found(f"{kind.label} {key!r}")
    if not key.startswith("@"):
        body.setdefault("name", key)
        if body["name"] != key:
            raise bad_input(("name",), f"the name in the body ({body['name']!r}) is not {key!r}")
    items[index] = body
    return index


def patch(data: Data, kind: Kind, parents: tuple[str, ...], key: str, change: Any) -> int:
    """Apply a JSON merge patch (RFC 7386) to an object; its position."""
    _need_object(change)
    items = locate(data, kind, parents).items
    index = find(items, key)
    if index is None:
        raise not_found(f"{kind.label} {key!r}")
    items[index] = merge_patch(items[index], change)
    return index


def delete(data: Data, kind: Kind, parents: tuple[str, ...], key: str) -> None:
    """Remove an object (404 when absent)."""
    items = locate(data, kind, parents).items
    index = find(items, key)
    if index is None:
        raise not_found(f"{kind.label} {key!r}")
    del items[index]


def at(root: Any, path: tuple[PathPart, ...]) -> Any:
    """The object at `path` (format_path parts) of a Config model or plain data."""
    node = root
    for part in path:
        node = (
            node[part] if isinstance(part, int) or isinstance(node, dict) else getattr(node, part)
        )
    return node


def merge_patch(target: Any, change: Any) -> Any:
    """RFC 7386: objects merge key by key, `null` removes a key, anything else replaces."""
    if not isinstance(change, dict):
        return change
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in change.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _need_object(body: Any) -> None:
    if not isinstance(body, dict):
        raise bad_input(("body",), "expected a JSON object")
