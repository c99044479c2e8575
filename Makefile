# Two commands on a fresh machine with python3 (3.11+) and make:  `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Offline and quiet Prefect everywhere (no telemetry; a slow first start of its temporary server is fine).
# Only warnings on the console; flow and task run logs still reach the Prefect API (the UI shows them).
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL := WARNING

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# The main job on the bundled real sample: the nightly flow (ingest, refresh beliefs, evaluate, publish) as a
# Prefect flow run, then what it believes about two users and a query enriched from the published snapshot.
# Users: 26 answers a lot; 1044 asked one question (cold start). Run it again: nothing changes.
demo: install
	$(BIN)/selfmodel nightly
	@echo
	$(BIN)/selfmodel beliefs 26
	@echo
	$(BIN)/selfmodel beliefs 1044
	@echo
	$(BIN)/selfmodel enrich 26 "How do I build a Toffoli gate?"
	@echo
	@echo "Where to look:"
	@echo "  warehouse     .selfmodel/analyst/warehouse.duckdb (a read-only copy: duckdb -readonly, or Python)"
	@echo "  snapshot      $(BIN)/selfmodel snapshots; $(BIN)/selfmodel lookup 26"
	@echo "  report        .selfmodel/report.html (eval report)"
	@echo "  data docs     .selfmodel/data_docs/index.html (Great Expectations site: suites, validations; static files)"
	@echo "  HTTP API      $(BIN)/selfmodel api, then curl http://127.0.0.1:8000/users/26/beliefs (POST /enrich, /healthz)"
	@echo "  Prefect UI    $(BIN)/prefect server start, then http://127.0.0.1:4200 (this run and its artifacts)"
	@echo "  schedule it   docs/reference.md: prefect deploy + work pool + worker, or selfmodel serve"

# The suite in TEST_WORKERS processes (pytest-xdist): 2 keeps it near 6 minutes on a 2-core machine, where one
# process took nearly 10. Each worker starts its own temporary Prefect server when a flow test lands on it.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench: install
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf .selfmodel
