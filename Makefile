# The two commands of the quick start are `make run` and `make test`; the rest are for developers.
.DEFAULT_GOAL := help
export PATH := $(HOME)/.local/bin:$(PATH)
# Trust the platform certificate store (corporate proxies, mirrors), not only uv's bundled roots.
export UV_SYSTEM_CERTS := 1

help:        ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run:         ## run the whole system locally and bill last month end to end (ARGS=--keep-running to stay up)
	@scripts/bootstrap
	uv run --frozen python -m devstack.local_run $(ARGS)

test:        ## every check and every test, as CI runs them
	@scripts/test

check:       ## lint, format check, types, import rules, generated-file drift (no tests)
	@scripts/bootstrap
	uv run --frozen ruff check . && uv run --frozen ruff format --check . && uv run --frozen lint-imports
	uv run --frozen mypy
	uv run --frozen python -m billing_contracts.compat --check

format:      ## fix lint and formatting
	uv run ruff check --fix . && uv run ruff format .

contracts:   ## regenerate contracts/schemas/*.json and contracts/asyncapi.yaml from the models
	uv run python -m billing_contracts.export

topics:      ## regenerate the Strimzi KafkaTopics and KafkaUsers (ACLs) from the topic registry
	uv run python deploy/generate_topics.py

bench:       ## run the benchmarks and print their figures next to this machine's ceilings
	@scripts/bootstrap
	uv run --frozen python -m benchmarks

.PHONY: help run test check format contracts topics bench
