"""How a Config is written down in a store, and the hash that identifies its content."""

from __future__ import annotations

import hashlib
import json

from ..model import Config


def config_json(config: Config) -> str:
    """The canonical JSON text of a config: every field, keys sorted, no spaces.

    Equal configs give equal text, so the text's hash identifies the content.
    """
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def content_hash(config: Config) -> str:
    """The SHA-256 (hex) of the config's canonical JSON."""
    return hashlib.sha256(config_json(config).encode()).hexdigest()
