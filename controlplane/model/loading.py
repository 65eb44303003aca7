"""Reading config files: YAML or JSON, with parse errors that name file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .config import Config
from .errors import ConfigError, Issue
from .tls import REDACT_KEYS, PemFileError, is_inline_pem, read_pem_file
from .validate import parse_config


class ConfigFileError(ValueError):
    """A config file could not be read or parsed; the message names file, line and column."""


def parse_text(text: str, source: str = "<config>") -> Any:
    """Plain data from YAML or JSON text (JSON is read as JSON when it looks like it)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigFileError(f"{source}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigFileError(f"{where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{source}: {exc}") from None


def load_text(text: str, source: str = "<config>", files_relative_to: Path | None = None) -> Config:
    """A validated Config from YAML or JSON text.

    With `files_relative_to`, certificate and key fields may name PEM files (relative paths
    from that directory), read as `resolve_certificate_files` does; without it they must be
    inline PEM.
    """
    data = parse_text(text, source)
    if files_relative_to is not None:
        resolve_certificate_files(data, files_relative_to)
        resolve_address_files(data, files_relative_to)
    return _config_from_data(data)


def _config_from_data(data: Any) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Issue((), "a config is a mapping with listeners and clusters")])
    return parse_config(data)


def load_file(path: str | Path) -> Config:
    """A validated Config from a YAML or JSON file.

    Certificate and key fields may name PEM files, relative to the file's own directory; the
    returned Config holds their text (see `resolve_certificate_files`).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8 text") from None
    return load_text(text, str(path), files_relative_to=path.resolve().parent)


def resolve_certificate_files(data: Any, base: Path) -> None:
    """Replace each certificate and key field of plain config data that names a file (any
    value without PEM text) by the file's content, relative paths taken from `base`.

    Files are read as `read_pem_file` does: regular files of at most MAX_PEM bytes. Raises
    ConfigError naming the field of every file that cannot be read; what a file holds is
    checked by validation, as inline PEM is.
    """
    issues = []
    listeners = data.get("listeners") if isinstance(data, dict) else None
    for li, listener in enumerate(listeners if isinstance(listeners, list) else ()):
        certificates = listener.get("certificates") if isinstance(listener, dict) else None
        for ci, cert in enumerate(certificates if isinstance(certificates, list) else ()):
            for field in ("cert", "key"):
                value = cert.get(field) if isinstance(cert, dict) else None
                if not isinstance(value, str) or is_inline_pem(value) or not value:
                    continue
                try:
                    cert[field] = read_pem_file(base / value)
                except PemFileError as exc:
                    issues.append(Issue(("listeners", li, "certificates", ci, field), str(exc)))
    if issues:
        raise ConfigError(issues)


MAX_ADDRESS_FILE = 8 << 20
"""The largest file of CIDRs a config file may name (about 300,000 IPv6 ranges)."""


def resolve_address_files(data: Any, base: Path) -> None:
    """Replace each `{file: path}` entry of a listener's `addresses.allow` or `deny` in plain
    config data by the CIDRs of that file (one a line; blank lines and `#` comments skipped),
    relative paths taken from `base`. Raises ConfigError naming the entry of every file that
    cannot be read (regular UTF-8 files of at most MAX_ADDRESS_FILE bytes); the CIDRs are
    checked by validation, as inline ones are."""
    issues = []
    listeners = data.get("listeners") if isinstance(data, dict) else None
    for li, listener in enumerate(listeners if isinstance(listeners, list) else ()):
        rules = listener.get("addresses") if isinstance(listener, dict) else None
        if not isinstance(rules, dict):
            continue
        for field in ("allow", "deny"):
            entries = rules.get(field)
            if not isinstance(entries, list):
                continue
            resolved: list[Any] = []
            for ei, entry in enumerate(entries):
                if not (isinstance(entry, dict) and set(entry) == {"file"}):
                    resolved.append(entry)
                    continue
                try:
                    resolved.extend(_read_cidr_file(base / str(entry["file"])))
                except ConfigFileError as exc:
                    issues.append(Issue(("listeners", li, "addresses", field, ei), str(exc)))
            rules[field] = resolved
    if issues:
        raise ConfigError(issues)


def _read_cidr_file(path: Path) -> list[str]:
    try:
        if not path.is_file():
            raise ConfigFileError(f"{path.name}: not a regular file")
        if path.stat().st_size > MAX_ADDRESS_FILE:
            raise ConfigFileError(f"{path.name}: larger than {MAX_ADDRESS_FILE} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{path.name}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path.name}: not UTF-8 text") from None
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def dump_yaml(config: Config, redact_keys: bool = False) -> str:
    """The config as YAML, fields that keep their default omitted; private keys shown as their
    redaction marker with `redact_keys`."""
    context = {REDACT_KEYS: True} if redact_keys else None
    data = config.model_dump(mode="json", exclude_defaults=True, context=context)
    return yaml.safe_dump(data, sort_keys=False)
