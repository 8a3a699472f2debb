# Thin targets; the work is in devstack/ (python -m devstack --help).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.PHONY: install up down status demo test chaos unit bench lint format proto proto-check token clean lock audit security

$(STAMP): pyproject.toml constraints.txt deploy/local/bootstrap-python.sh
	bash deploy/local/bootstrap-python.sh $(PYTHON) $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## Create .venv and install the project with its dev tools

up: install ## Start Postgres, Redis, the broker and every service; leave them running
	$(PY) -m devstack up

down: ## Stop everything the stack started
	@if [ -x $(PY) ]; then $(PY) -m devstack down; fi

status: install ## Show each process of the local stack
	$(PY) -m devstack status

demo: install ## Run the main job: start the stack, run the scenario, print it, stop
	$(PY) -m devstack demo

test: install lint proto-check ## Lint, then the whole suite against the real local stack
	$(PY) -m devstack test

chaos: install ## The heavy runs: the full 2,000-buyer storm (under a minute)
	LIVECOMMERCE_CHAOS=1 $(PY) -m devstack test -m chaos

bench: install ## Benchmark the reserve path and the order checkout (artifacts/bench/); ARGS="--strict"
	$(PY) -m devstack bench $(ARGS)

unit: install ## Only the tests that need no infrastructure
	$(PY) -m pytest -m "not integration" -q

lint: install ## ruff (format check + lint) and mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy services devstack tests bench

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

proto: install ## Regenerate livecommerce/ from proto/
	$(PY) -m devstack.proto generate

proto-check: install ## Fail if livecommerce/ is stale against proto/
	$(PY) -m devstack.proto check

LOCK_OPTIONS := --constraint constraints.txt --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --no-header --quiet

lock: install ## Rewrite requirements.lock (runtime) and requirements-dev.lock, pinned with hashes
	$(BIN)/uv pip compile pyproject.toml $(LOCK_OPTIONS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_OPTIONS) -o requirements-dev.lock

AUDIT_LOG := .stack/pip-audit.log

# pip-audit exits 1 both for vulnerabilities found and for a database it cannot reach, and
# exits 0 having skipped every package its database does not know (a mirror without the
# PyPI JSON API). Only found vulnerabilities fail; the other two say loudly that the audit
# was not done, or not for every package.
audit: install ## Vulnerability audit of the lock files (pip-audit); no database reachable: said, not failed
	@mkdir -p $(dir $(AUDIT_LOG)); status=0; \
	$(BIN)/pip-audit --disable-pip --progress-spinner off --desc on \
		-r requirements.lock -r requirements-dev.lock > $(AUDIT_LOG) 2>&1 || status=$$?; \
	cat $(AUDIT_LOG); \
	pinned=$$(grep -cE '^[A-Za-z0-9].*==' requirements-dev.lock); \
	skipped=$$(grep -c 'could not be audited' $(AUDIT_LOG)); \
	if grep -qE '^Found [0-9]+ known vulnerabilit' $(AUDIT_LOG); then exit 1; fi; \
	if [ $$status -ne 0 ]; then \
		echo "make audit: AUDIT NOT DONE: pip-audit stopped (above; usually: its database is unreachable)"; \
	elif [ $$skipped -ge $$pinned ]; then \
		echo "make audit: AUDIT NOT DONE: the database knows none of the $$pinned packages"; \
	elif [ $$skipped -gt 0 ]; then \
		echo "make audit: $$skipped of $$pinned packages could not be audited"; \
	fi

security: install ## The security suite: tokens, roles and tenants, abuse limits, webhooks, fuzzing
	$(PY) -m devstack test tests/security

token: install ## Mint a development token: make token ARGS="--role merchant-admin --merchant m1"
	$(PY) -m devstack token $(ARGS)

clean: down
	rm -rf .stack $(VENV)
