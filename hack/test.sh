#!/usr/bin/env bash
# make test: installs what the tests need, runs unit tests (and each fuzz
# target briefly: hack/fuzz.sh), then brings up a local stack (control
# plane, build hosts, rbn-kubelet) and runs the end-to-end tests against
# it with the real kubectl. `hack/test.sh unit` or
# `hack/test.sh e2e` runs one tier.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
tier="${1:-all}"
cd "${RBN_ROOT}"

"${RBN_ROOT}/hack/install-deps.sh"

if [[ "${tier}" == all || "${tier}" == unit ]]; then
  rbn::log "unit tests"
  go vet ./...
  # The e2e tests and the benchmarks' entry points are behind build tags:
  # compile and vet them here, so that a broken harness fails the unit tier.
  go vet -tags "${RBN_E2E_TAGS}" ./e2e/...
  go vet -tags "${RBN_E2E_TAGS},soak" ./e2e/
  # -race needs cgo; the build tags keep the podman tree free of C libraries.
  CGO_ENABLED=1 go test -race -count=1 ./...
  # The seed corpora ran above; a few seconds of new inputs per target
  # (make fuzz runs longer).
  FUZZTIME="${FUZZTIME:-5s}" "${RBN_ROOT}/hack/fuzz.sh"
fi

if [[ "${tier}" == all || "${tier}" == e2e ]]; then
  # A stack of its own, in its own state dir, torn down whatever happens.
  export RBN_STATE="${RBN_E2E_STATE_DIR:-${RBN_ROOT}/_output/e2e}"
  # dev-down fails when the worker node left the machine changed: so does the run.
  trap 'rc=$?; "${RBN_ROOT}/hack/dev-down.sh" || rc=1; exit "${rc}"' EXIT
  "${RBN_ROOT}/hack/dev-down.sh" >/dev/null 2>&1 || true
  # E2E_NODES (default 4) ordinary hosts; the last of them is isolated (no route to this machine's
  # loopback services: the registry and the S3 server) and pulls images through rbn-kubelet from the
  # test registry (hack/registry.sh). dev-down stops the registry and the S3 server.
  nodes="${E2E_NODES:-4}"
  export RBN_ISOLATED_HOSTS="${RBN_ISOLATED_HOSTS:-${nodes}}"
  # One more host, after them: an emulated aarch64 host (hack/hosts.sh; its root filesystem is built
  # once, about 8-16 minutes, and cached), started but not registered: e2e/arm64_test.go registers
  # its node, so that no other test sees a slow arm64 node; with RBN_ARM64_HOSTS set, `registry.sh
  # up` also pushes the multi-arch test images. E2E_ARM64=0 leaves it out (the test then says why it
  # did not run). TestArm64Host takes about 2 minutes; it took 24 in one clean-clone run while the
  # amd64 hosts' sshd ran root's ~/.bashrc for every command, which kept the machine's load far
  # above its 2 cores and starved the emulated host most (see the sshd_config in hack/hosts.sh).
  if [[ "${E2E_ARM64:-1}" != 0 ]]; then
    export RBN_ARM64_HOSTS="$((nodes + 1))" RBN_UNREGISTERED_HOSTS="$((nodes + 1))"
    nodes="$((nodes + 1))"
  else
    unset RBN_ARM64_HOSTS RBN_UNREGISTERED_HOSTS
  fi
  "${RBN_ROOT}/hack/registry.sh" up >/dev/null
  RBN_S3=1 NODES="${nodes}" "${RBN_ROOT}/hack/dev-up.sh" >/dev/null
  eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  # The S3 server for the transfer tests (and s3relay's integration tests).
  eval "$("${RBN_ROOT}/hack/s3.sh" env)"
  export RBN_E2E_KUBECONFIG="${KUBECONFIG}" RBN_E2E_KUBECTL="${K8S_BIN}/kubectl" RBN_E2E_STATE="${RBN_STATE}" RBN_E2E_ROOT="${RBN_ROOT}"
  # rbn runs as pods on the worker node, from manifests/ (hack/dev-up.sh); RBN_IN_CLUSTER=0: as
  # local processes (the development mode).
  RBN_E2E_IN_CLUSTER=0
  if rbn::in_cluster; then RBN_E2E_IN_CLUSTER=1; fi
  export RBN_E2E_IN_CLUSTER
  # Prometheus and kube-state-metrics beside the stack, as kube-prometheus scrapes a cluster
  # (TestMonitoring runs rbn's rules and dashboard against them).
  if rbn::in_cluster; then
    "${RBN_ROOT}/hack/monitoring.sh" up
    eval "$("${RBN_ROOT}/hack/monitoring.sh" env)"
  fi
  rbn::log "S3 relay integration tests"
  go test -count=1 -run '^TestIntegration' ./internal/s3relay/
  rbn::log "end-to-end tests"
  log="${RBN_STATE}/../e2e-test.log"
  rc=0
  # The package takes 47-55 minutes on this machine: the timeout leaves room for a slow one within
  # CI's 90.
  go test -tags "e2e,${RBN_GO_TAGS}" -count=1 -timeout 75m -v ./e2e/... 2>&1 | tee "${log}" || rc=$?
  # Tests of the other mode say why they did not run; list them, they are not passes.
  if grep -q -- '--- SKIP' "${log}"; then
    rbn::log "not run in this mode (the reasons are in ${log}):"
    grep -- '--- SKIP' "${log}" >&2
  fi
  grep -- 'NOT RUN:' "${log}" >&2 || true
  # The fault suite's figures of this run (docs/reliability.md is one such report, committed).
  if go run ./e2e/cmd/faultreport -log "${log}" -out "${RBN_STATE}/../reliability.md" \
    -run "\`make test\` at $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d)"; then
    rbn::log "fault suite report: ${RBN_STATE}/../reliability.md"
    sed -n '/^\*\*/p' "${RBN_STATE}/../reliability.md" >&2
  else
    rbn::log "no fault suite report from this run (above: why)"
  fi
  if ((rc != 0)); then
    # What failed is far above the end of a long log (a timeout's goroutine dump alone is thousands
    # of lines): say it again, last, with the tests a timeout caught running.
    rbn::log "end-to-end tests failed (exit ${rc}; the whole log is ${log}):"
    grep -E -- '^ *--- FAIL|^(FAIL|ok) ' "${log}" >&2 || true
    sed -n '/^panic: test timed out/,/^$/p' "${log}" >&2
    exit "${rc}"
  fi
fi
