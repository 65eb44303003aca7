# `make run`, `make lab` and `make test` work on a fresh Debian machine with Python 3.11.
PY ?= python3
VENV := .venv
APT_PACKAGES := haproxy wrk postgresql docker.io docker-compose mmdebstrap modsecurity-crs

.PHONY: setup apt run lab test lint fmt typecheck schema clean

setup: apt $(VENV)/.installed

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

run: setup
	$(VENV)/bin/python -m controlplane.demo

lab: setup
	$(VENV)/bin/controlplane lab up

test: setup
	$(VENV)/bin/ruff check controlplane tests bench
	$(VENV)/bin/ruff format --check controlplane tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check controlplane tests bench
	$(VENV)/bin/ruff format --check controlplane tests bench

fmt: setup
	$(VENV)/bin/ruff format controlplane tests bench
	$(VENV)/bin/ruff check --fix controlplane tests bench

typecheck: setup
	$(VENV)/bin/mypy

schema: setup
	$(VENV)/bin/controlplane schema > schemas/config.schema.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
