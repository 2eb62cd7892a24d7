#!/usr/bin/env bash
# hack/kubelet.sh start|stop|restart: runs bin/rbn-kubelet against the local
# stack with the configuration dev-up wrote ($RBN_STATE/kubelet/config.yaml).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KUBELET_DIR="${RBN_STATE}/kubelet"

start() {
  [[ -f "${KUBELET_DIR}/config.yaml" ]] || rbn::die "no ${KUBELET_DIR}/config.yaml: run hack/dev-up.sh"
  local port
  port="$(sed -n 's/^kubeletPort: //p' "${KUBELET_DIR}/config.yaml")"
  # Locally rbn-kubelet authenticates as user "rbn-kubelet": let it hold the
  # per-node Leases in rbn-system as the service account's Role does
  # (manifests/rbac/rbac.yaml, applied by dev-up).
  eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rbn-kubelet-sharding-local-user, namespace: rbn-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbn-kubelet-sharding}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: rbn-kubelet}]
YAML
  rbn::log "starting rbn-kubelet (log: ${KUBELET_DIR}/rbn-kubelet.log)"
  # Registries rbn-kubelet relays images from are configured as for any containers tool: the test
  # registry (hack/registry.sh) is plain HTTP on loopback.
  local env=()
  [[ -f "${RBN_STATE}/registry/registries.conf" ]] && env=(env "CONTAINERS_REGISTRIES_CONF=${RBN_STATE}/registry/registries.conf")
  rbn::start rbn-kubelet "${KUBELET_DIR}/rbn-kubelet.log" "${env[@]}" "${RBN_ROOT}/bin/rbn-kubelet" --config="${KUBELET_DIR}/config.yaml"
  rbn::wait_for_daemon rbn-kubelet "rbn-kubelet's kubelet API on port ${port}" 30 rbn::port_in_use "${port}"
}

case "${1:-}" in
  start) start ;;
  stop) rbn::stop rbn-kubelet ;;
  restart) rbn::stop rbn-kubelet; start ;;
  *) rbn::die "usage: $0 start|stop|restart" ;;
esac
