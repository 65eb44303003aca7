"""Reading config files: YAML and JSON, errors that name file, line and column, examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controlplane.model import ConfigError, ConfigFileError, dump_yaml, load_file, load_text

from .conftest import base_config

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid(path: Path) -> None:
    load_file(path)


def test_yaml_and_json_read_the_same(tmp_path: Path) -> None:
    data = base_config()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "c.json").write_text(json.dumps(data))
    assert load_file(tmp_path / "c.yaml") == load_file(tmp_path / "c.json")


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("listeners:\n  - name: web\n    address: [oops\n")
    with pytest.raises(ConfigFileError, match=r"broken\.yaml:4:1: "):
        load_file(path)


def test_a_json_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "listeners": [,]\n}\n')
    with pytest.raises(ConfigFileError, match=r"broken\.json:2:17: "):
        load_file(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"nope\.yaml: No such file"):
        load_file(tmp_path / "nope.yaml")


def test_a_config_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="a config is a mapping"):
        load_text("- just\n- a list\n")


def test_an_empty_file_is_an_empty_config() -> None:
    assert load_text("").listeners == []


def test_certificate_paths_are_relative_to_the_config_file() -> None:
    config = load_file(EXAMPLES[0].parent / "nginx-article.yaml")
    cert = config.listeners[0].certificates[0]
    assert Path(cert.cert).is_absolute() and Path(cert.cert).exists()


def test_a_dumped_config_loads_back_the_same() -> None:
    config = load_file(EXAMPLES[0].parent / "quickstart.yaml")
    assert load_text(dump_yaml(config)) == config
