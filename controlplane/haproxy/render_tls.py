"""Certificates of https listeners: one PEM file (chain + key) per certificate and a crt-list.

File names carry a hash of their content, so a changed certificate changes the configuration
text and the manager reloads rather than keeping the old one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..model import Listener


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class TlsFiles:
    """The files an https listener's `bind ... crt-list` line reads."""

    crt_list: str
    files: dict[str, str] = field(default_factory=dict)


def tls_files(listener: Listener) -> TlsFiles:
    """The PEM files and crt-list of `listener`: one line per certificate, its SNI filters,
    the first certificate first (HAProxy's default when no name matches)."""
    files: dict[str, str] = {}
    lines = []
    for index, certificate in enumerate(listener.certificates):
        cert = certificate.cert.strip() + "\n"
        key = certificate.key.strip() + "\n"
        content = cert + key
        name = f"{listener.name}.{index}.{_digest(content)}.pem"
        files[name] = content
        lines.append(" ".join([name, *certificate.server_names]))
    crt_list = "".join(f"{line}\n" for line in lines)
    list_name = f"{listener.name}.{_digest(crt_list)}.crtlist"
    files[list_name] = crt_list
    return TlsFiles(crt_list=list_name, files=files)
