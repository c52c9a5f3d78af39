# Bookline developer commands. `make run` sets everything up and starts the stack on localhost.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser run test bench bench-telemetry clean

install: $(VENV)/.installed browser

# the browser tests drive Debian's chromium through Playwright (never a browser download of its own)
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# the stamp is older than pyproject.toml only when the dependencies may have changed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $@

# the pip bundled with Python 3.11 cannot resolve the pinned OpenTelemetry packages: upgrade it first
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# seed is idempotent and quick when the inventory already exists
run: install
	$(BIN)/bookline seed
	exec $(BIN)/bookline up

test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/bookings.py

bench-telemetry: install
	$(BIN)/python bench/telemetry.py

clean:
	rm -rf var
