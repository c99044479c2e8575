# Two commands on a fresh machine with python3 (3.11+) and make:  `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Offline and quiet Prefect everywhere (no telemetry; a slow first start of its temporary server is fine).
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_LOGGING_LEVEL := WARNING

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The main job on the bundled real sample. Users: 26 answers a lot; 1044 asked one question (cold start).
demo: install
	$(BIN)/selfmodel ingest
	@echo
	$(BIN)/selfmodel quarantine --limit 3
	@echo
	$(BIN)/selfmodel refresh
	@echo
	$(BIN)/selfmodel beliefs 26
	@echo
	$(BIN)/selfmodel beliefs 1044

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf .selfmodel
