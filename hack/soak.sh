#!/usr/bin/env bash
# make soak: the churn soak of issue #17 (e2e/soak_test.go, build tags e2e and soak; never part of
# make test). Brings up a stack of its own as make test does (rbn in the cluster from manifests/,
# E2E_NODES build hosts, default 4, the last isolated), creates and deletes pods on them for
# RBN_SOAK_DURATION (default 30m), RBN_SOAK_CONCURRENCY at a time (default 8), samples
# rbn-kubelet's resident memory, goroutines and open SSH channels and the podman objects on the
# hosts every RBN_SOAK_SAMPLE_EVERY (default 5m), fails when any of them grew or a pod failed, and
# writes the figures to RBN_SOAK_OUT (default docs/soak.md). It tears the stack down whatever
# happens. RBN_SOAK_STACK=running uses the stack already up at RBN_STATE instead (make dev-up with
# RBN_IN_CLUSTER=1, the default) and leaves it up.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}"

export RBN_SOAK_OUT="${RBN_SOAK_OUT:-${RBN_ROOT}/docs/soak.md}"
duration="${RBN_SOAK_DURATION:-30m}"
if [[ "${RBN_SOAK_STACK:-own}" != running ]]; then
  "${RBN_ROOT}/hack/install-deps.sh"
  export RBN_STATE="${RBN_STATE:-${RBN_ROOT}/_output/soak}"
  trap 'rc=$?; "${RBN_ROOT}/hack/dev-down.sh" || rc=1; exit "${rc}"' EXIT
  "${RBN_ROOT}/hack/dev-down.sh" >/dev/null 2>&1 || true
  nodes="${E2E_NODES:-4}"
  export RBN_ISOLATED_HOSTS="${RBN_ISOLATED_HOSTS:-${nodes}}"
  unset RBN_ARM64_HOSTS RBN_UNREGISTERED_HOSTS
  "${RBN_ROOT}/hack/registry.sh" up >/dev/null
  NODES="${nodes}" "${RBN_ROOT}/hack/dev-up.sh" >/dev/null
fi
rbn::in_cluster || rbn::die "the soak reads rbn-kubelet's /metrics from its pods: it needs rbn in the cluster (RBN_IN_CLUSTER=1)"
eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
export RBN_E2E_KUBECONFIG="${KUBECONFIG}" RBN_E2E_KUBECTL="${K8S_BIN}/kubectl" RBN_E2E_STATE="${RBN_STATE}" RBN_E2E_ROOT="${RBN_ROOT}" RBN_E2E_IN_CLUSTER=1
rbn::log "churn soak for ${duration} (report: ${RBN_SOAK_OUT}; log: ${RBN_STATE}.soak.log)"
# go test's own deadline (RBN_SOAK_TIMEOUT, default 3h) bounds the churn, the warm-up before it and
# the settling after it: raise it with a longer RBN_SOAK_DURATION.
go test -tags "e2e,soak,${RBN_GO_TAGS}" -count=1 -timeout "${RBN_SOAK_TIMEOUT:-3h}" -v -run '^TestSoak$' ./e2e/ 2>&1 | tee "${RBN_STATE}.soak.log"
exit "${PIPESTATUS[0]}"
