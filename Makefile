# signal-engine: `make demo` runs the local pipeline on real data, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
NPM_STAMP := node_modules/.setup-stamp
# checkov in its own virtualenv: its pinned dependencies conflict with .venv's (requirements-tools.txt).
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.setup-stamp
# pytest-xdist workers for `make test`: auto (the default) is one per core; TEST_JOBS=0 runs the suite in one
# process. Each worker has its own MariaDB database and moto state; tests sharing an expensive fixture stay together.
TEST_JOBS ?= auto
CDK_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true \
	JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20

.PHONY: setup demo study test mutation synth package-lambdas lint bench clean readme-results check-readme check-quickstart

setup: $(STAMP) $(NPM_STAMP) $(TOOLS_STAMP)

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $(TOOLS_STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

demo: $(STAMP) $(NPM_STAMP)  # checkov's tools venv is for the tests only
	$(PY) -m signal_engine demo --out out/demo

# The demo plus the expert suite (every expert of the catalogue against its baseline): about twice as long.
study: $(STAMP) $(NPM_STAMP)
	$(PY) -m signal_engine demo --out out/study --suite

# Bytecode on, even where the environment turns it off (PYTHONDONTWRITEBYTECODE): every worker rewrites the asserts
# of every test module it collects, and the suite's subprocesses import signal_engine again; from a run on they
# read both from __pycache__ (git-ignored), a few seconds of CPU per worker.
test: setup
	$(CDK_ENV) PYTHONDONTWRITEBYTECODE= CHECKOV=$(CURDIR)/$(TOOLS_VENV)/bin/checkov $(PY) -m pytest $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadgroup)

# Mutation testing of the promise-carrying modules, outside `make test` (slow; docs/mutation.md):
# make mutation [MUTATION_GROUPS="labels prices"]; results and survivors under .mutation/<group>/summary.json
mutation: $(STAMP)
	$(CDK_ENV) $(PY) scripts/mutation.py $(MUTATION_GROUPS)

# Lambda deployment packages (handlers + signal_engine + manylinux wheels) under build/lambda/, no Docker;
# the combiner's also carries bytecode for what a cold start imports (lambda_src/combiner/build.py).
# RDS MySQL's and DocumentDB's TLS need the Amazon RDS CA bundle in both packages (deployed functions refuse
# unverified connections): make package-lambdas RDS_CA_BUNDLE=global-bundle.pem
#   (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem; DOCDB_CA_BUNDLE is the former name)
RDS_CA_BUNDLE ?= $(DOCDB_CA_BUNDLE)
package-lambdas: setup
	$(CDK_ENV) $(PY) -m stacks.lambda_packages build/lambda --group collectors $(if $(RDS_CA_BUNDLE),--ca-bundle $(RDS_CA_BUNDLE))
	$(CDK_ENV) $(PY) lambda_src/combiner/build.py build/lambda $(if $(RDS_CA_BUNDLE),--ca-bundle $(RDS_CA_BUNDLE))

synth: setup package-lambdas
	$(CDK_ENV) npx cdk synth --quiet --output cdk.out

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy signal_engine stacks app.py

bench: setup
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_combine.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_moe.py
	$(PY) benchmarks/bench_serving.py
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_development.py
	for study in drawdown allocation ablation; do \
		$(PY) benchmarks/bench_orchestration.py --study $$study || exit 1; done   # needs out/demo/data: run make demo first
	@if [ -n "$$SIGNAL_ENGINE_TEST_MYSQL_URL" ]; then $(PY) benchmarks/bench_storage.py; \
	else echo 'bench_storage: skipped; start MariaDB with: eval "$$(bash .ci/run mariadb)"'; fi

# The README's results table is the demo's own output (out/demo/results.md, written by `make demo`):
# `make readme-results` copies it between the README's results markers; `make check-readme` fails, naming the
# first differing line, when the README's table is not what the demo wrote.
readme-results: $(STAMP)
	$(PY) -m signal_engine.report.readme_results README.md out/demo/results.md

check-readme: $(STAMP)
	$(PY) -m signal_engine.report.readme_results --check README.md out/demo/results.md

# The README's quick start as a new user runs it: its `serve` command and curl calls, over the bundle of `make demo`.
check-quickstart: $(STAMP)
	$(PY) scripts/check_quickstart.py README.md

clean:
	rm -rf out cdk.out build/lambda .pytest_cache .mypy_cache .ruff_cache
