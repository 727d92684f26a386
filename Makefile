# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint venv clean bench bench-quick lock cloud-local

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "gong-sync needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

venv: $(STAMP)

## Sync every source locally: embedded Postgres + BigQuery emulator seeded with demo data.
run: $(STAMP)
	$(BIN)/gong-sync run $(ARGS)

## Lint, type-check and run the whole test suite, on two workers (pytest-xdist). A module's
## tests share one worker (--dist loadscope): the platform harness starts once, not per worker.
test: $(STAMP) lint
	$(BIN)/pytest -n 2 --dist loadscope $(ARGS)

## The unit layer alone: every test that needs no Postgres, emulator or harness (seconds).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not services" $(ARGS)

## Benchmark at 100k calls / 500k transcript rows against bare COPY and dlt; writes bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python -m bench --markdown bench/RESULTS.md $(ARGS)

## The same benchmark at a small scale (under 3 minutes); CI runs it after the tests.
bench-quick: $(STAMP)
	$(BIN)/python -m bench --calls 5000 --transcripts 25000 --rss-transcripts 5000,25000 \
		--label quick $(ARGS)

## The deployed topology on this machine: the Pulumi program's functions on python312 behind
## Cloud Run's limits, its Pub/Sub subscriptions on the emulator, the scheduler ticking.
cloud-local: $(STAMP)
	PYTHONPATH=infra $(BIN)/python -m gong_sync_infra.cloud_local $(ARGS)

## Regenerate functions/requirements.txt, the functions' full lock, from the tested pins.
lock: $(STAMP)
	cd infra && ../$(BIN)/python -m gong_sync_infra.runtime_lock

# actionlint checks .github/workflows (expressions, action inputs, the reusable workflow's
# inputs) and runs shellcheck on every `run:` script. pulumi/actions sets one step output per
# stack output, which its action.yml cannot declare: those three are let through here, and
# tests/test_workflows.py checks them against the outputs infra/__main__.py exports.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check shared tests functions infra bench
	$(BIN)/mypy
	$(BIN)/actionlint -shellcheck=$(BIN)/shellcheck \
		-ignore 'property "(trigger_topic|dead_letter_topic|cloud_sql_connection_name)" is not defined in object type \{output: string\}' \
		.github/workflows/*.yml

clean:
	rm -rf $(VENV) .local
