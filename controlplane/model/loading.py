"""Reading config files: YAML or JSON, with parse errors that name file, line and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .config import Config
from .errors import ConfigError, Issue
from .tls import is_inline_pem
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


def load_text(text: str, source: str = "<config>") -> Config:
    """A validated Config from YAML or JSON text."""
    return _config_from_data(parse_text(text, source))


def _config_from_data(data: Any) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Issue((), "a config is a mapping with listeners and clusters")])
    return parse_config(data)


def load_file(path: str | Path) -> Config:
    """A validated Config from a YAML or JSON file.

    Relative certificate and key paths are relative to the file's own directory; the
    returned Config holds them as absolute paths.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigFileError(f"{path}: {exc.strerror}") from None
    data = parse_text(text, str(path))
    _anchor_certificate_paths(data, path.resolve().parent)
    return _config_from_data(data)


def _anchor_certificate_paths(data: Any, base: Path) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("listeners"), list):
        return
    for listener in data["listeners"]:
        certificates = listener.get("certificates") if isinstance(listener, dict) else None
        for cert in certificates if isinstance(certificates, list) else ():
            for field in ("cert", "key"):
                value = cert.get(field) if isinstance(cert, dict) else None
                if isinstance(value, str) and not is_inline_pem(value):
                    cert[field] = str(base / value)


def dump_yaml(config: Config) -> str:
    """The config as YAML, fields that keep their default omitted."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False)
