#!/usr/bin/env bash
# Stops everything hack/dev-up.sh started, by pid, and removes its state.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rbn::stop rbn-kubelet
"${RBN_ROOT}/hack/hosts.sh" down
"${RBN_ROOT}/hack/cluster.sh" down
rm -rf "${RBN_STATE}"
rbn::log "local stack stopped"
