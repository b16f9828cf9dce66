# The two commands a newcomer needs: `make run` (set up, then run everything on this box)
# and `make test` (set up, then run the whole suite). .ci/run runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup bench lint clean

run: setup
	$(BIN)/voicefleet up

test: setup
	@$(MAKE) --no-print-directory apt-deps NEED=postgresql
	$(BIN)/python -m pytest

setup: $(STAMP)
	@$(MAKE) --no-print-directory apt-deps NEED=mosquitto

# Debian packages when missing: Mosquitto (the broker), PostgreSQL (the tests' throwaway server).
.PHONY: apt-deps
apt-deps:
	@missing=""; \
	case "$(NEED)" in *mosquitto*) command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] \
	  || missing="$$missing mosquitto";; esac; \
	case "$(NEED)" in *postgresql*) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	  || missing="$$missing postgresql";; esac; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[edge,control,dev]'
	touch $(STAMP)

bench: setup
	$(BIN)/python benchmarks/dispatch.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
