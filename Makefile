# Entry points. `make deploy` stands the stack up on this machine; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= $(CURDIR)/.venv
export VENV
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Where each pytest tier writes its JUnit report; scripts/test_summary.py adds them up at the end.
RESULTS := $(CURDIR)/.test-results
PYTEST = $(VENV)/bin/pytest --junitxml=$(RESULTS)/$@.xml
# Extra arguments for ansible-playbook, e.g. `make deploy ARGS="-i inventory/example"`.
ARGS ?=

.PHONY: help bootstrap testbed test-packages deploy validate smoke teardown lint test-unit \
        test-integration test-e2e molecule test test-fast bench clean

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

bootstrap: ## Create .venv (Python >= 3.12) with the pinned controller and test dependencies.
	@bash scripts/bootstrap.sh

testbed: bootstrap ## Offline test bed: Docker engine, Compose v2, stand-in images, local registry.
	@bash tests/testbed/testbed.sh

test-packages: ## Debian packages the tests run for real (redis-server, promtool, amtool, chromium, ...).
	@bash scripts/install-test-packages.sh

deploy: bootstrap ## Deploy the whole stack on this machine (falls back to the test bed when offline).
	@bash scripts/deploy.sh $(ARGS)

validate: bootstrap ## Assert that the deployed stack is healthy.
	ansible-playbook playbooks/validate.yml $(ARGS)

smoke: bootstrap ## Run the test flow through the worker and time it.
	ansible-playbook playbooks/smoke.yml $(ARGS)

teardown: bootstrap ## Stop and remove the stack; data volumes are kept unless ARGS="-e stack_purge_data=true".
	ansible-playbook playbooks/teardown.yml $(ARGS)

lint: bootstrap ## yamllint, ansible-lint (production profile), ruff.
	yamllint --strict .
	ansible-lint --offline -q
	ruff check .
	ruff format --check .

test-unit: bootstrap ## Unit tier: no Docker, under a minute.
	@mkdir -p $(RESULTS)
	$(PYTEST) -m unit

test-integration: bootstrap test-packages ## Integration tier: real local processes.
	@mkdir -p $(RESULTS)
	$(PYTEST) -m integration

test-e2e: testbed test-packages ## End-to-end tier: the stack on the real Docker engine through the test bed registry.
	@mkdir -p $(RESULTS)
	$(PYTEST) -m e2e

molecule: testbed ## Molecule scenarios (disposable systemd hosts), each through `molecule test`.
	@mkdir -p $(RESULTS)
	$(PYTEST) -m molecule || [ $$? -eq 5 ]  # exit 5: no scenario collected yet

test: ## Every test: lint, unit, integration, e2e, molecule; prints one summary line at the end.
	@rm -rf $(RESULTS)
	$(MAKE) --no-print-directory lint test-unit test-integration test-e2e molecule
	@$(VENV)/bin/python scripts/test_summary.py $(RESULTS)

test-fast: ## Lint and the unit tier.
	@rm -rf $(RESULTS)
	$(MAKE) --no-print-directory lint test-unit
	@$(VENV)/bin/python scripts/test_summary.py $(RESULTS)

bench: testbed ## Benchmark A-G (bench/README.md): table + bench/results/<time>.json. ARGS="--rounds 5 --only ABCD"
	$(VENV)/bin/python -m bench $(ARGS)

clean: ## Remove local build products (not the stack, not the test bed cache).
	rm -rf $(RESULTS) .pytest_cache .ruff_cache
