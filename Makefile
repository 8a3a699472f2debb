# Thin targets; the work is in devstack/ (python -m devstack --help).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.PHONY: install up down status demo test chaos unit bench lint format proto proto-check token clean

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

chaos: install ## The heavy runs: full-size sale storms and fault injection (minutes)
	LIVECOMMERCE_CHAOS=1 $(PY) -m devstack test -m chaos

bench: install ## Benchmark the flash-sale reserve path (report: artifacts/bench/); ARGS="--strict"
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

token: install ## Mint a development token: make token ARGS="--role merchant-admin --merchant m1"
	$(PY) -m devstack token $(ARGS)

clean: down
	rm -rf .stack $(VENV)
