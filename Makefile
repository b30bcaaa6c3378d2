# Fleetward. `make run` and `make test` work on a fresh machine with Python 3.11+ and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GEN_OUT := clients/python/src
PYTEST_ARGS ?=
QUICK ?= 0
TRACING ?= 0

.PHONY: help venv run stop reset test test-reliability bench profile lint proto check-proto buf-lint token lock clean

help:
	@echo "make run               start embedded PostgreSQL (unless DATABASE_URL), migrate, seed demo, serve"
	@echo "make stop              stop a running make run (also: Ctrl-C, or SIGTERM to it)"
	@echo "make reset             make stop, then delete the embedded demo database (fresh demo next run)"
	@echo "make test              set up and run the test suite"
	@echo "make test-reliability  reliability, security and authorization-property suites incl. slow runs (<= 10 min)"
	@echo "make bench [QUICK=1]   performance table, then how cost grows + bench/results.json"
	@echo "                       (QUICK=1: < 4 min; FULL=1: the largest growth sizes, ~25 min more)"
	@echo "                       TRACING=1: both services traced into a local OTLP sink"
	@echo "make profile           py-spy + pg_stat_statements of Execute and Check under load (bench/profiles/)"
	@echo "make lint              ruff + mypy strict, hadolint + yamllint on deploy/"
	@echo "make proto             regenerate clients/python/src/fleetward/*/v1 from protos/"
	@echo "make check-proto       fail when make proto would change the committed code"
	@echo "make buf-lint          buf lint (buf from the npm package @bufbuild/buf)"
	@echo "make token SUB=bob     print a dev token (SUB=svc:NAME for a service token)"

$(STAMP): pyproject.toml clients/python/pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade 'pip>=24'
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ./clients/python -e '.[dev]'
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	@$(PY) -m services.dev run

stop: $(STAMP)
	@$(PY) -m services.dev stop

reset: $(STAMP)
	@$(PY) -m services.dev reset

test: $(STAMP)
	@$(PY) -m services.dev with-db -- $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@$(PY) -m services.dev with-db -- $(PY) -m bench $(if $(filter 1,$(QUICK)),--quick,) \
	  $(if $(filter 1,$(TRACING)),--tracing,) $(if $(filter 1,$(FULL)),--full,)

profile: $(STAMP)
	@$(PY) -m bench.profile

test-reliability: $(STAMP)
	@$(PY) -m services.dev with-db -- $(PY) -m pytest -m 'slow or not slow' tests/reliability tests/security tests/actions/test_authorize_property.py $(PYTEST_ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/hadolint deploy/Dockerfile
	@$(VENV)/bin/yamllint --strict deploy/

proto: $(STAMP)
	@$(PY) -m services.dev gen-proto --out $(GEN_OUT)

check-proto: $(STAMP)
	@$(PY) -m services.dev gen-proto --out $(GEN_OUT) --check

.tools/node_modules/.bin/buf:
	@mkdir -p .tools && npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@1 >/dev/null

buf-lint: .tools/node_modules/.bin/buf
	@.tools/node_modules/.bin/buf lint

token: $(STAMP)
	@$(PY) -m services.dev token "$(SUB)"

lock: $(STAMP)
	@(echo "# Pinned versions for a reproducible install (regenerate: make lock)"; \
	  $(PY) -m pip freeze --exclude-editable | grep -vi '^fleetward') > constraints.txt

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
