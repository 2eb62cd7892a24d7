#!/usr/bin/env bash
# Stops everything hack/dev-up.sh started, by pid, and removes its state.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# First, while the apiserver answers (its pods are removed through it); it checks that the machine
# is as before the worker came up and fails otherwise, after the rest is stopped.
worker_rc=0
"${RBN_ROOT}/hack/worker.sh" down || worker_rc=$?
rbn::stop rbn-kubelet
rbn::stop rbn-extender
rbn::stop rbn-approver
"${RBN_ROOT}/hack/s3.sh" down
"${RBN_ROOT}/hack/monitoring.sh" down
"${RBN_ROOT}/hack/hosts.sh" down
"${RBN_ROOT}/hack/registry.sh" down
"${RBN_ROOT}/hack/cluster.sh" down
if [[ -f "${RBN_STATE}/node-interface" ]]; then
  ip link del "$(cat "${RBN_STATE}/node-interface")" 2>/dev/null || true
fi
rm -rf "${RBN_STATE}"
# The stack's link (with the addresses on it: the apiserver's, the registry's and the S3 server's in
# the in-cluster mode, the hosts') and the worker's: neither may outlive the stack. (Addresses alone
# say nothing: a stack on another port may share the /24, as port % 250 does.)
left="$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -Ex "(${RBN_STACK_LINK}|rbnw${RBN_APISERVER_PORT:-16443})p?" || true)"
[[ -z "${left}" ]] || { rbn::log "left behind on this machine:"; printf '%s\n' "${left}" >&2; worker_rc=1; }
rbn::log "local stack stopped"
((worker_rc == 0)) || rbn::die "the stack left this machine changed (see above)"
