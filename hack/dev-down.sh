#!/usr/bin/env bash
# Stops everything hack/dev-up.sh started, by pid, and removes its state.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# First, while the apiserver answers (its pods are removed through it); it checks that the machine
# is as before the worker came up and fails otherwise, after the rest is stopped.
worker_rc=0
"${RBN_ROOT}/hack/worker.sh" down || worker_rc=$?
rbn::stop rbn-kubelet
rbn::stop rbn-extender
"${RBN_ROOT}/hack/s3.sh" down
"${RBN_ROOT}/hack/hosts.sh" down
"${RBN_ROOT}/hack/registry.sh" down
"${RBN_ROOT}/hack/cluster.sh" down
if [[ -f "${RBN_STATE}/node-interface" ]]; then
  ip link del "$(cat "${RBN_STATE}/node-interface")" 2>/dev/null || true
fi
rm -rf "${RBN_STATE}"
rbn::log "local stack stopped"
((worker_rc == 0)) || rbn::die "hack/worker.sh down left the machine changed (see above)"
