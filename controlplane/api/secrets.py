"""Private keys through the API: never shown, kept across a read-edit-write.

Every answer shows a config or object through `responses.shown` (or `dump_yaml(...,
redact_keys=True)`), which writes each private key as `redacted:sha256:<digest of its PEM>`
(`controlplane.model.tls.redacted`). A write may send such a marker back where a key goes:
`restore_keys` puts back the current config's key with that digest, so GET, edit, PUT keeps
the keys without a client ever holding them. A marker no current key matches is refused.
"""

from __future__ import annotations

from typing import Any

from ..model import Config, Issue
from ..model.tls import REDACTED_PREFIX, pem_digest
from .errors import ApiError, issue_json

UNKNOWN_DIGEST = "no private key of the current config has this digest; send the key as PEM"


def restore_keys(data: Any, current: Config | None) -> None:
    """Replace, in the plain config `data`, each redacted key by the key of `current` (the
    head the write applies to) with that digest; 422 naming each marker that matches none."""
    keys = {
        pem_digest(certificate.key): certificate.key
        for listener in (current.listeners if current else ())
        for certificate in listener.certificates
    }
    issues = []
    listeners = data.get("listeners") if isinstance(data, dict) else None
    for li, listener in enumerate(listeners if isinstance(listeners, list) else ()):
        certificates = listener.get("certificates") if isinstance(listener, dict) else None
        for ci, certificate in enumerate(certificates if isinstance(certificates, list) else ()):
            value = certificate.get("key") if isinstance(certificate, dict) else None
            if not isinstance(value, str) or not value.startswith(REDACTED_PREFIX):
                continue
            known = keys.get(value.removeprefix(REDACTED_PREFIX))
            if known is not None:
                certificate["key"] = known
            else:
                path = ("listeners", li, "certificates", ci, "key")
                issues.append(issue_json(Issue(path, UNKNOWN_DIGEST)))
    if issues:
        raise ApiError(422, "the config is invalid", issues)
