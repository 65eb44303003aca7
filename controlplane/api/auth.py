"""Bearer tokens with `read`, `write` and `agent` scopes.

Tokens come from a file or the CONTROLPLANE_TOKENS environment variable, both a YAML or
JSON list of `{name, token | sha256, scopes, groups}`. `read` reads the config and status
(and dry-runs), `write` changes the config, `agent` is what an HAProxy agent holds: it fetches
the bundle of, and reports for, the node groups listed in `groups` (required with `agent`, and
only there). Only SHA-256 digests are kept in memory and compared (in constant time); logs
name a token by its `name`, never its value.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

Scope = Literal["read", "write", "agent"]
SCOPES: tuple[Scope, ...] = ("read", "write", "agent")
ENV_VAR = "CONTROLPLANE_TOKENS"
LOCAL_PRINCIPAL = "local"
"""The author of writes made without a token on an `insecure_local` server."""


class TokenFileError(ValueError):
    """A tokens file or variable could not be read; the message says where and why."""


@dataclass(frozen=True)
class Token:
    """A credential: its name (for logs and revision authors), digest, scopes, and the node
    groups its `agent` scope is for."""

    name: str
    sha256: str
    scopes: frozenset[Scope]
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Principal:
    """Who a request is: a token's name, scopes and agent groups (or the local user of an
    insecure server, who is an agent of every group)."""

    name: str
    scopes: frozenset[Scope]
    groups: frozenset[str] = frozenset()
    every_group: bool = False

    def is_agent_of(self, group: str) -> bool:
        """Whether this principal may fetch and report for node group `group` as an agent."""
        return "agent" in self.scopes and (self.every_group or group in self.groups)


def digest(token: str) -> str:
    """The SHA-256 (hex) of a token value, the form in which tokens are stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenSet:
    """The tokens a server accepts."""

    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self.tokens = list(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal whose token this is, None when no token matches."""
        presented_digest = digest(presented)
        found: Token | None = None
        for token in self.tokens:
            if hmac.compare_digest(token.sha256, presented_digest) and found is None:
                found = token
        return Principal(found.name, found.scopes, found.groups) if found else None

    @classmethod
    def from_data(cls, data: Any, source: str) -> TokenSet:
        """Tokens from plain data: a list of `{name, token | sha256, scopes, groups}`."""
        if data is None:
            return cls()
        if not isinstance(data, list):
            raise TokenFileError(f"{source}: expected a list of tokens")
        return cls(_token(item, f"{source}[{i}]") for i, item in enumerate(data))

    @classmethod
    def from_text(cls, text: str, source: str) -> TokenSet:
        """Tokens from YAML or JSON text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TokenFileError(f"{source}: not YAML or JSON ({exc.__class__.__name__})") from None
        return cls.from_data(data, source)

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> TokenSet:
        """Tokens from a file and from CONTROLPLANE_TOKENS, both when both are given."""
        environ = os.environ if environ is None else environ
        tokens: list[Token] = []
        if path is not None:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise TokenFileError(f"{path}: {exc.strerror}") from None
            tokens += cls.from_text(text, str(path)).tokens
        if environ.get(ENV_VAR):
            tokens += cls.from_text(environ[ENV_VAR], ENV_VAR).tokens
        return cls(tokens)


def _token(item: Any, where: str) -> Token:
    if not isinstance(item, dict):
        raise TokenFileError(f"{where}: expected a mapping with name, token or sha256, scopes")
    unknown = set(item) - {"name", "token", "sha256", "scopes", "groups"}
    if unknown:
        raise TokenFileError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise TokenFileError(f"{where}.name: a token needs a name")
    if ("token" in item) == ("sha256" in item):
        raise TokenFileError(f"{where}: give exactly one of token, sha256")
    if "token" in item:
        value = item["token"]
        if not isinstance(value, str) or len(value) < 16:
            raise TokenFileError(f"{where}.token: a token is a string of 16 characters or more")
        sha = digest(value)
    else:
        sha = str(item["sha256"]).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise TokenFileError(f"{where}.sha256: expected 64 hex digits")
    scopes = item.get("scopes")
    if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
        raise TokenFileError(f"{where}.scopes: a non-empty list of {', '.join(SCOPES)}")
    groups = item.get("groups")
    if "agent" in scopes:
        if (
            not isinstance(groups, list)
            or not groups
            or any(not isinstance(g, str) or not g for g in groups)
        ):
            raise TokenFileError(
                f"{where}.groups: the agent scope needs the list of node groups it serves"
            )
    elif groups is not None:
        raise TokenFileError(f"{where}.groups: groups bind the agent scope, which it lacks")
    return Token(name, sha, frozenset(scopes), frozenset(groups or ()))


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authorizer:
    """Decides who a request is and whether it may do what it asks.

    A request presents `Authorization: Bearer <token>`. No token: 401, unless the server
    is `insecure_local` (bound on loopback only; its caller checks), where a request
    without a token may read and write as `local`. A token that matches nothing: 401,
    always. A token without the scope: 403.
    """

    def __init__(self, tokens: TokenSet, insecure_local: bool = False) -> None:
        self.tokens = tokens
        self.insecure_local = insecure_local

    def principal(self, authorization: str | None) -> Principal | None:
        """Who presents this Authorization header; None when it carries no token.

        Raises PermissionError for a header that is not a known bearer token.
        """
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise PermissionError("use `Authorization: Bearer <token>`")
        principal = self.tokens.authenticate(value)
        if principal is None:
            raise PermissionError("unknown token")
        return principal

    def local(self) -> Principal | None:
        """The principal of a tokenless request, None when such requests are refused."""
        if self.insecure_local:
            return Principal(LOCAL_PRINCIPAL, frozenset(SCOPES), every_group=True)
        return None
