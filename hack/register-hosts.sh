#!/usr/bin/env bash
# Registers every local build host as a RemoteBuildNode, with its SSH Secret.
# Pods may mount hostPath volumes below $RBN_STATE/hostpath only; each host's provisioned volumes
# are under its own dir (volumes/, a shared mount: hack/hosts.sh). Isolated hosts (hosts.sh: NETNS set)
# reach no registry: they pull through rbn-kubelet (spec.imagePull: ThroughKubelet). Hosts listed in
# RBN_UNREGISTERED_HOSTS (indexes, hack/lib.sh) are left out.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HOSTPATH_ALLOWED="${RBN_STATE}/hostpath"
mkdir -p "${HOSTPATH_ALLOWED}"
eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
kubectl() { "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" "$@"; }
for dir in $("${RBN_ROOT}/hack/hosts.sh" list); do
  if rbn::host_unregistered "${dir##*/host}"; then
    rbn::log "not registering ${dir##*/} (RBN_UNREGISTERED_HOSTS)"
    continue
  fi
  # shellcheck disable=SC1091
  (
    . "${dir}/host.env"
    pull=Direct
    [[ -z "${NETNS:-}" ]] || pull=ThroughKubelet
    rbn::log "registering ${NAME} (${ADDRESS}:${PORT}, image pulls: ${pull})"
    kubectl -n rbn-system create secret generic "${NAME}-ssh" --type=kubernetes.io/ssh-auth \
      --from-file=ssh-privatekey="${PRIVATE_KEY}" --from-file=known_hosts="${KNOWN_HOSTS}" \
      --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    kubectl apply -f - >/dev/null <<YAML
apiVersion: rbn.dev/v1alpha1
kind: RemoteBuildNode
metadata:
  name: ${NAME}
spec:
  address: ${ADDRESS}
  port: ${PORT}
  user: ${USER}
  podmanSocket: ${PODMAN_SOCKET}
  sshSecretRef: {name: ${NAME}-ssh, namespace: rbn-system}
  labels:
    rbn.dev/local-test-host: "true"
  hostPathAllowlist: [${HOSTPATH_ALLOWED}]
  imagePull: ${pull}
  volumes: {root: ${dir}/volumes}
  # The test hosts share this machine's disk, which is not theirs to guard (as the worker's
  # kubelet, hack/worker.sh): no image garbage collection, no disk pressure, whatever else
  # fills it. The tests of both set their own thresholds (e2e/disk_test.go).
  imageGC: {highThresholdPercent: 100, lowThresholdPercent: 99}
  diskPressure: {availableBelow: "0%"}
YAML
  )
done
