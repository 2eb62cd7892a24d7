# Every target is a one-liner into hack/. `make help` lists them.
SHELL := /usr/bin/env bash
NODES ?= 2
export NODES

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: ## Bring the local stack up (registry, S3, an isolated host) and run a real job through rbn
	hack/demo.sh

.PHONY: test
test: ## Unit tests and a brief fuzz run, then end-to-end tests against a local stack (installs what it needs)
	hack/test.sh

.PHONY: test-unit
test-unit: ## Unit tests (and a brief fuzz run) only
	hack/test.sh unit

.PHONY: test-e2e
test-e2e: ## End-to-end tests only (brings its own stack up and down)
	hack/test.sh e2e

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s): make fuzz FUZZTIME=5m
	hack/fuzz.sh

.PHONY: soak
soak: ## Churn soak: pods created and deleted for RBN_SOAK_DURATION (30m) on a stack of its own; writes docs/soak.md
	hack/soak.sh

.PHONY: dev-up
dev-up: ## Start control plane, NODES build hosts and rbn-kubelet in the background
	hack/dev-up.sh

.PHONY: dev-down
dev-down: ## Stop everything dev-up started
	hack/dev-down.sh

.PHONY: build
build: ## Build bin/rbn-kubelet
	hack/build.sh

.PHONY: image
image: ## Build the rbn-kubelet and rbn-extender images (hack/image.sh push: to the stack's registry)
	hack/image.sh

.PHONY: generate
generate: ## Regenerate deepcopy code and the CRD from the API types
	hack/generate.sh

.PHONY: verify
verify: ## Check generated files, formatting and vet
	hack/verify.sh

bench: ## Benchmarks against a floor on a local stack of 4 hosts of its own; writes docs/benchmarks.md
	hack/bench.sh
