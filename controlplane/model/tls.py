"""Certificates and keys: inline PEM text, what it may contain, and reading it from files.

A config holds certificates and keys as PEM text, never as file paths: a path would let
whoever writes a config (or only dry-runs one) make the server read its files. Config files
may name PEM files; `controlplane.model.loading` reads them (`read_pem_file`) before the
config is validated, so what reaches the model is always text.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import stat
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

MAX_PEM = 64 * 1024
"""The longest PEM text a certificate or key field holds, in characters (ASCII: bytes)."""

PEM_MARK = "-----BEGIN "

INLINE_ONLY = "certificates and keys are inline PEM; the CLI resolves file paths"
"""Why a value that is not PEM text is refused (it is most likely a file path)."""

_WS = r"[ \t\r\n]*"
_PEM_BLOCK = (
    r"-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----\r?\n"
    r"(?:[A-Za-z0-9+/=]+\r?\n)*"
    r"-----END \1-----"
)
_PEM = re.compile(rf"{_WS}(?:{_PEM_BLOCK}{_WS})+")

REDACTED_PREFIX = "redacted:sha256:"
"""What API reads show instead of a private key: this prefix and the SHA-256 of the PEM."""

REDACT_KEYS = "redact_keys"
"""The serialisation context key that makes a dump show private keys redacted:
`config.model_dump(context={REDACT_KEYS: True})`."""


def _check_pem(value: str) -> str:
    if len(value) > MAX_PEM:
        raise ValueError(f"PEM text is limited to {MAX_PEM} characters, not {len(value)}")
    if not _PEM.fullmatch(value):
        if PEM_MARK not in value:
            raise ValueError(INLINE_ONLY)
        raise ValueError(
            "not PEM text: expected only '-----BEGIN ...-----' blocks of base64 lines, "
            "each closed by its '-----END ...-----' line"
        )
    return value


Pem = Annotated[
    str,
    AfterValidator(_check_pem),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": MAX_PEM,
            "description": "PEM text: one or more '-----BEGIN ...-----' blocks (the only "
            "strings of the model that hold newlines).",
        }
    ),
]
"""PEM text: '-----BEGIN X-----' blocks of base64 lines, whitespace between them, at most
MAX_PEM characters. The one kind of model string that holds line breaks."""


def is_inline_pem(value: str) -> bool:
    """Whether a certificate or key field of a config file holds PEM text rather than a path."""
    return PEM_MARK in value


def pem_digest(pem: str) -> str:
    """The SHA-256 (hex) of PEM text: how a redacted key names the key it stands for."""
    return hashlib.sha256(pem.encode()).hexdigest()


def redacted(pem: str) -> str:
    """What reads show instead of the private key `pem` (the one place a key is redacted)."""
    return REDACTED_PREFIX + pem_digest(pem)


class PemFileError(ValueError):
    """A PEM file could not be read; the message says which file and why."""


def read_pem_file(path: str | Path) -> str:
    """The text of a PEM file: a regular file of at most MAX_PEM bytes of ASCII.

    Anything else (a device such as /dev/zero, a FIFO, a directory, a larger file) is refused
    without being read past MAX_PEM + 1 bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise PemFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PemFileError(f"cannot read {path}: not a regular file")
        if info.st_size > MAX_PEM:
            raise PemFileError(f"{path}: larger than {MAX_PEM} bytes; not a PEM file")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_PEM + 1)
    except OSError as exc:
        raise PemFileError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PEM:
        raise PemFileError(f"{path}: larger than {MAX_PEM} bytes; not a PEM file")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise PemFileError(f"{path}: not PEM text (not ASCII)") from None


def certificate_problem(cert: str, key: str) -> str | None:
    """Why a PEM certificate and key cannot serve TLS, or None when they can."""
    if "-----BEGIN CERTIFICATE-----" not in cert:
        return "cert is not a PEM certificate"
    if "PRIVATE KEY-----" not in key:
        return "key is not a PEM private key"
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        Path(cert_file).write_text(cert)
        Path(key_file).write_text(key)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            return f"certificate and key do not load together: {exc.reason or exc}"
    return None
