"""Certificates and keys given as file paths or inline PEM."""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

PEM_MARK = "-----BEGIN "


def is_inline_pem(value: str) -> bool:
    """Whether a certificate or key field holds PEM text rather than a file path."""
    return PEM_MARK in value


def pem_text(value: str) -> str:
    """The PEM text of a field: the value itself, or the content of the file it names."""
    return value if is_inline_pem(value) else Path(value).read_text()


def certificate_problem(cert: str, key: str) -> str | None:
    """Why a certificate and key cannot serve TLS, or None when they can."""
    try:
        cert_pem, key_pem = pem_text(cert), pem_text(key)
    except OSError as exc:
        return f"cannot read {exc.filename}: {exc.strerror}"
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        return "cert is not a PEM certificate"
    if "PRIVATE KEY-----" not in key_pem:
        return "key is not a PEM private key"
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        Path(cert_file).write_text(cert_pem)
        Path(key_file).write_text(key_pem)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            return f"certificate and key do not load together: {exc.reason or exc}"
    return None
