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


def test_certificate_files_are_read_relative_to_the_config_file() -> None:
    examples = EXAMPLES[0].parent
    config = load_file(examples / "nginx-article.yaml")
    cert = config.listeners[0].certificates[0]
    assert cert.cert == (examples / "certs" / "example.com.crt").read_text()
    assert cert.key == (examples / "certs" / "example.com.key").read_text()


def https_config(cert: str, key: str) -> str:
    return yaml.safe_dump(
        {
            "listeners": [
                {
                    "name": "secure",
                    "address": "127.0.0.1:8443",
                    "protocol": "https",
                    "certificates": [{"cert": cert, "key": key}],
                    "virtual_hosts": [
                        {
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{"backends": [{"cluster": "web"}]}],
                        }
                    ],
                }
            ],
            "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9001"}]}],
        }
    )


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("/dev/zero", "cannot read /dev/zero: not a regular file"),
        (".", "not a regular file"),
        ("missing.key", "missing.key: No such file"),
        ("big.key", "larger than 65536 bytes"),
    ],
)
def test_a_certificate_file_that_is_not_a_small_regular_file_is_refused_unread(
    tmp_path: Path, key: str, reason: str
) -> None:
    certs = Path(__file__).resolve().parents[2] / "certs"
    (tmp_path / "big.key").write_bytes(b"-" * 10_000_000)
    path = tmp_path / "c.yaml"
    path.write_text(https_config(str(certs / "example.com.crt"), key))
    with pytest.raises(ConfigError) as refused:
        load_file(path)
    [issue] = refused.value.issues
    assert str(issue).startswith("listeners[0].certificates[0].key: ")
    assert reason in issue.message


def test_a_dumped_config_loads_back_the_same() -> None:
    config = load_file(EXAMPLES[0].parent / "quickstart.yaml")
    assert load_text(dump_yaml(config)) == config
