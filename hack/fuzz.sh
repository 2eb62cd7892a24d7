#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in a _test.go file) for FUZZTIME
# each (default 10s), one at a time: go test -fuzz takes one target per run.
# make test runs them briefly; make fuzz FUZZTIME=5m for longer.
# Their seed corpora (testdata/fuzz/FuzzXxx/) run with plain go test too.
# An input that fails is written there by go test: fix the bug and commit
# the input, plain go test replays it from then on.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}"
FUZZTIME="${FUZZTIME:-10s}"
log="$(mktemp)"
trap 'rm -f "${log}"' EXIT

# The targets come from the sources (not go test -list, which would build
# each test binary once more), so that a new one is fuzzed without being
# listed here.
mapfile -t pkgs < <(git grep -l --untracked '^func Fuzz' -- '*_test.go' | xargs -r -n1 dirname | sort -u)
((${#pkgs[@]})) || rbn::die "no fuzz targets found"
for pkg in "${pkgs[@]}"; do
  mapfile -t targets < <(git grep -h --untracked -o '^func Fuzz[A-Za-z0-9_]*(' -- "${pkg}/*_test.go" | sed 's/^func //; s/($//' | sort)
  for target in "${targets[@]}"; do
    rbn::log "fuzzing ${pkg} ${target} for ${FUZZTIME}"
    corpus="${pkg}/testdata/fuzz/${target}"
    before="$(ls "${corpus}" 2>/dev/null || true)"
    rc=0
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME}" "./${pkg}" 2>&1 | tee "${log}" || rc=$?
    ((rc == 0)) && continue
    found="$(comm -13 <(echo "${before}") <(ls "${corpus}" 2>/dev/null || true))"
    [[ -z "${found}" ]] || rbn::die "${target} failed on ${corpus}/${found}: fix the bug, commit the input"
    # Go 1.26's fuzz coordinator can report its own -fuzztime deadline as
    # a failure when a busy machine delays a worker (go.dev/issue/75804,
    # fixed in Go 1.27): no failing input was written, so none was found.
    if grep -q '^    context deadline exceeded$' "${log}"; then
      rbn::log "${target}: go's fuzztime deadline race (go.dev/issue/75804), no failing input: not a finding"
      continue
    fi
    rbn::die "${target} failed"
  done
done
