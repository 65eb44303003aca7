"""The JSON Schema of the config format, as published in schemas/config.schema.json."""

from __future__ import annotations

from typing import Any

from .config import Config

SCHEMA_ID = "https://controlplane.dev/schemas/config.schema.json"


def config_schema() -> dict[str, Any]:
    """The JSON Schema a config file must satisfy (structure; whole-config rules aside)."""
    schema = Config.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
