# Two entry points for a fresh clone: `make demo` (set up and run the demo fleet) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo shell test test-tools lint services lock schemas clean

$(BIN)/.installed: pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

## services: install the Debian packages the demo and the tests run (mosquitto, influxdb, promtool, postgresql,
## openssl for the TLS tests' throwaway CA)
services:
	@missing=""; \
	command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	command -v mosquitto_pub >/dev/null || missing="$$missing mosquitto-clients"; \
	command -v influxd >/dev/null || missing="$$missing influxdb"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: services $(BIN)/.installed
	$(BIN)/lockerfleet demo

## shell: an interactive shell with .venv active, so `lockerfleet` is on the PATH (exit leaves it)
shell: $(BIN)/.installed
	@echo "lockerfleet is on the PATH in this shell ($(abspath $(BIN))); exit to leave it"
	@VIRTUAL_ENV="$(abspath $(VENV))" PATH="$(abspath $(BIN)):$$PATH" $${SHELL:-/bin/sh} -i

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m schemas.export --check

## test-tools: Debian packages only the tests use: curl (the README's examples) and chromium (/docs rendered offline)
test-tools:
	@missing=""; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test: services test-tools lint
	$(BIN)/pytest

## lock: re-pin every dependency of every extra, for every platform (a locker's lgpio too), after editing pyproject.toml
lock: $(BIN)/.installed
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal -o requirements.lock --python-version 3.11 --quiet

## schemas: regenerate schemas/json/ after changing a model
schemas: $(BIN)/.installed
	$(BIN)/python -m schemas.export

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
