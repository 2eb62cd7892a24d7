#!/usr/bin/env bash
# hack/kubelet.sh start|stop|restart: runs bin/rbn-kubelet against the local
# stack with the configuration dev-up wrote ($RBN_STATE/kubelet/config.yaml). In the in-cluster mode
# (hack/lib.sh) the same verbs act on the Deployment rbn-system/rbn-kubelet instead: stop scales it
# to 0 and waits until its pods are gone, start scales it back to the replicas it had before stop
# (the manifests' 2 when unknown) and waits until it is Ready, restart rolls it and waits likewise.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KUBELET_DIR="${RBN_STATE}/kubelet"

# deployment stop|start|restart: the in-cluster verbs.
deployment() {
  eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  local k=("${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" -n rbn-system) sel=app.kubernetes.io/name=rbn-kubelet
  case "$1" in
    stop)
      local n
      n="$("${k[@]}" get deployment/rbn-kubelet -o jsonpath='{.spec.replicas}')"
      mkdir -p "${KUBELET_DIR}"
      if [[ "${n}" =~ ^[1-9][0-9]*$ ]]; then echo "${n}" >"${KUBELET_DIR}/replicas"; fi
      "${k[@]}" scale deployment/rbn-kubelet --replicas=0 >/dev/null
      "${k[@]}" wait --for=delete pod -l "${sel}" --timeout=60s >/dev/null 2>&1 ||
        [[ -z "$("${k[@]}" get pods -l "${sel}" -o name)" ]] ||
        rbn::die "rbn-kubelet's pods still there 60s after scaling to 0"
      return 0 ;;
    start) "${k[@]}" scale deployment/rbn-kubelet --replicas="$(cat "${KUBELET_DIR}/replicas" 2>/dev/null || echo 2)" >/dev/null ;;
    restart) "${k[@]}" rollout restart deployment/rbn-kubelet >/dev/null ;;
  esac
  "${k[@]}" rollout status deployment/rbn-kubelet --timeout=120s >/dev/null ||
    { "${k[@]}" get pods -l "${sel}" -o wide >&2; rbn::die "deployment rbn-system/rbn-kubelet not Ready after $1"; }
  rbn::log "rbn-kubelet: $1 done ($("${k[@]}" get pods -l "${sel}" -o jsonpath='{.items[*].metadata.name}'))"
}

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

if rbn::in_cluster; then
  case "${1:-}" in
    start | stop | restart) deployment "$1"; exit 0 ;;
  esac
fi
case "${1:-}" in
  start) start ;;
  stop) rbn::stop rbn-kubelet ;;
  restart) rbn::stop rbn-kubelet; start ;;
  *) rbn::die "usage: $0 start|stop|restart" ;;
esac
