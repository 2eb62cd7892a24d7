#!/usr/bin/env bash
# Stops everything hack/dev-up.sh started, by pid, and removes its state.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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
