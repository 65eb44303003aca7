"""A small valid config that each validation test breaks in one place."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

CERTS = Path(__file__).resolve().parents[2] / "certs"


def base_config() -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": "web",
                "address": "127.0.0.1:8080",
                "protocol": "http",
                "virtual_hosts": [
                    {
                        "name": "site",
                        "domains": ["example.com", "*.example.com"],
                        "routes": [
                            {
                                "name": "api",
                                "match": {"path": {"prefix": "/api"}},
                                "backends": [{"cluster": "api", "weight": 90}],
                            },
                            {"name": "default", "backends": [{"cluster": "web"}]},
                        ],
                    }
                ],
            },
            {
                "name": "secure",
                "address": "127.0.0.1:8443",
                "protocol": "https",
                "certificates": [
                    {
                        "server_names": ["example.com"],
                        "cert": (CERTS / "example.com.crt").read_text(),
                        "key": (CERTS / "example.com.key").read_text(),
                    }
                ],
                "virtual_hosts": [
                    {
                        "name": "all",
                        "domains": ["*"],
                        "routes": [{"backends": [{"cluster": "web"}]}],
                    }
                ],
            },
            {
                "name": "db",
                "address": "127.0.0.1:5432",
                "protocol": "tcp",
                "default_cluster": "postgres",
            },
            {
                "name": "passthrough",
                "address": "127.0.0.1:9443",
                "protocol": "tls",
                "sni_routes": [{"server_names": ["db.example.com"], "cluster": "postgres"}],
            },
        ],
        "clusters": [
            {"name": "api", "endpoints": [{"address": "127.0.0.1:9001"}]},
            {"name": "web", "endpoints": [{"address": "web.internal:80", "weight": 3}]},
            {"name": "postgres", "protocol": "tcp", "endpoints": [{"address": "10.0.0.5:5432"}]},
        ],
    }


@pytest.fixture
def config() -> dict[str, Any]:
    return copy.deepcopy(base_config())
