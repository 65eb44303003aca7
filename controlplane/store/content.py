"""How a Config is written down in a store, and the hash that identifies its content."""

from __future__ import annotations

import hashlib

from ..model import Config
from ..model.parts import PARTS


def config_json(config: Config) -> str:
    """The JSON text of a config: every field, in the model's field order, no spaces.

    Equal configs give equal text (for one version of the model), so the text's hash
    identifies the content. It is `config.model_dump_json()`, made from the text of the
    parts a new revision keeps from the one before (`model.parts`).
    """
    return PARTS.json(config)


def text_hash(text: str) -> str:
    """The SHA-256 (hex) of a config's JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(config: Config) -> str:
    """The SHA-256 (hex) of the config's JSON text."""
    return text_hash(config_json(config))
