#!/usr/bin/env bash
# Fails when generated files are stale, code is not gofmt-ed, or go vet complains
# (about any package, the end-to-end tests and the benchmarks included).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}"
unformatted="$(gofmt -l $(git ls-files '*.go'))"
[[ -z "${unformatted}" ]] || rbn::die "not gofmt-ed: ${unformatted}"
"${RBN_ROOT}/hack/generate.sh"
git diff --exit-code -- internal/api manifests/crd || rbn::die "generated files are stale: run make generate"
# ./... holds e2e/framework and e2e/bench (the benchmark harness); the second
# vet adds package e2e's tests and benchmark entry points, behind their tags.
go vet ./...
go vet -tags "${RBN_E2E_TAGS}" ./e2e/...
