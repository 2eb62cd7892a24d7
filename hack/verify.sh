#!/usr/bin/env bash
# Fails when generated files are stale, code is not gofmt-ed, or go vet complains.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}"
unformatted="$(gofmt -l $(git ls-files '*.go'))"
[[ -z "${unformatted}" ]] || rbn::die "not gofmt-ed: ${unformatted}"
"${RBN_ROOT}/hack/generate.sh"
git diff --exit-code -- internal/api manifests/crd || rbn::die "generated files are stale: run make generate"
go vet ./...
go vet -tags e2e ./e2e/...
