#!/usr/bin/env bash
# rbn installed from manifests/ as an operator installs it, on the local stack.
#
# Usage: hack/manifests.sh local    write $RBN_STATE/manifests: a kustomization on top of
#                                   hack/manifests/local with the stack's registry, the version
#                                   (hack/image.sh push pushes those images) and the stack's PKI;
#                                   prints its directory: kubectl apply -k <it>
#        hack/manifests.sh wait     wait until rbn's Deployments and DaemonSet in rbn-system are Ready
#                                   (RBN_IN_CLUSTER_TIMEOUT seconds each, default 180); if one is
#                                   not, print rbn's pods, their events and logs, and fail
#        hack/manifests.sh verify   render manifests/ and the local overlay with kubectl kustomize;
#                                   with a control plane up (hack/cluster.sh), also have the
#                                   apiserver accept them and rbac/without-node-identities.yaml
#                                   (kubectl apply --dry-run=server; the namespace rbn-system is
#                                   created for real, as dry-run needs it)
#
# Environment: RBN_POD_CIDR (default 10.42.0.0/24): the pod network rbn-kubelet's pods get
# addresses from; every address of it is in the kubelet API serving certificate, since the
# apiserver verifies the certificate against the pod IP a node advertises (IPv4, /22 or smaller).
# RBN_EXTENDER_CLUSTER_IP (default 10.0.0.250, in hack/cluster.sh's service CIDR): rbn-extender's
# Service address, pinned because kube-scheduler runs on this machine, where cluster DNS names do
# not resolve; the extender's certificate carries it. RBN_IMAGE_VERSION (default: hack/image.sh
# version) is the images' tag in the overlay. Written to $RBN_STATE/manifests/extender.env
# (URL and CA for kube-scheduler's extender configuration).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT="${RBN_STATE}/manifests"
POD_CIDR="${RBN_POD_CIDR:-10.42.0.0/24}"
EXTENDER_IP="${RBN_EXTENDER_CLUSTER_IP:-10.0.0.250}"
KUBECTL="${K8S_BIN}/kubectl"

# manifests::cidr_ips CIDR: every host address of an IPv4 CIDR (/22 to /30), one a line.
manifests::cidr_ips() {
  local ip="${1%/*}" bits="${1#*/}" a b c d base n i
  [[ "${bits}" =~ ^[0-9]+$ ]] && ((bits >= 22 && bits <= 30)) || rbn::die "RBN_POD_CIDR ${1}: want an IPv4 CIDR from /22 to /30"
  IFS=. read -r a b c d <<<"${ip}"
  base=$(((a << 24 | b << 16 | c << 8 | d) & ~((1 << (32 - bits)) - 1) & 0xffffffff))
  n=$((1 << (32 - bits)))
  for ((i = 1; i < n - 1; i++)); do
    local x=$((base + i))
    echo "$((x >> 24 & 255)).$((x >> 16 & 255)).$((x >> 8 & 255)).$((x & 255))"
  done
}

# manifests::sign NAME SUBJECT SANS: pki/NAME.{key,crt} signed by the stack's CA.
manifests::sign() {
  local name="$1" subj="$2" sans="$3" ca="${RBN_STATE}/cluster/pki"
  openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "${OUT}/pki/${name}.key"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "${sans}" >"${OUT}/pki/${name}.ext"
  openssl req -new -key "${OUT}/pki/${name}.key" -subj "${subj}" 2>/dev/null |
    openssl x509 -req -CA "${ca}/ca.crt" -CAkey "${ca}/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
      -days 30 -sha256 -extfile "${OUT}/pki/${name}.ext" -out "${OUT}/pki/${name}.crt" 2>/dev/null ||
    rbn::die "signing ${name} with the stack's CA failed"
  rm -f "${OUT}/pki/${name}.ext"
}

cmd_local() {
  [[ -f "${RBN_STATE}/cluster/pki/ca.key" ]] || rbn::die "no stack CA in ${RBN_STATE}/cluster/pki: run hack/cluster.sh up"
  local env="${RBN_STATE}/registry/registry.env"
  [[ -f "${env}" ]] || rbn::die "no ${env}: run hack/registry.sh up"
  local registry user password version base
  registry="$(sed -n 's/^REGISTRY=//p' "${env}")"
  user="$(sed -n 's/^USER=//p' "${env}")"
  password="$(sed -n 's/^PASSWORD=//p' "${env}")"
  version="${RBN_IMAGE_VERSION:-$("${RBN_ROOT}/hack/image.sh" version)}"
  rm -rf "${OUT}" && mkdir -p "${OUT}/pki" && chmod 700 "${OUT}/pki"
  base="$(realpath --relative-to="${OUT}" "${RBN_ROOT}/hack/manifests/local")"

  local sans="IP:127.0.0.1" ip
  while read -r ip; do sans+=",IP:${ip}"; done < <(manifests::cidr_ips "${POD_CIDR}")
  manifests::sign kubelet-serving "/CN=rbn-kubelet" "${sans}"
  manifests::sign extender-serving "/CN=rbn-extender" \
    "DNS:rbn-extender.rbn-system.svc,DNS:rbn-extender.rbn-system.svc.cluster.local,IP:${EXTENDER_IP}"
  cp "${RBN_STATE}/registry/registries.conf" "${OUT}/registries.conf"
  printf '{"auths":{"%s":{"auth":"%s"}}}' "${registry}" "$(printf '%s:%s' "${user}" "${password}" | base64 -w0)" \
    >"${OUT}/pki/registry.json"

  cat >"${OUT}/kustomization.yaml" <<EOF
# Written by hack/manifests.sh local for the stack in ${RBN_STATE}: do not edit.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ${base}
images:
  - name: ghcr.io/remote-build-nodes/rbn-kubelet
    newName: ${registry}/rbn/rbn-kubelet
    newTag: "${version}"
  - name: ghcr.io/remote-build-nodes/rbn-extender
    newName: ${registry}/rbn/rbn-extender
    newTag: "${version}"
generatorOptions:
  disableNameSuffixHash: true
configMapGenerator:
  - name: rbn-registries
    namespace: rbn-system
    files: [registries.conf]
secretGenerator:
  - name: rbn-kubelet-serving
    namespace: rbn-system
    type: kubernetes.io/tls
    files: [tls.crt=pki/kubelet-serving.crt, tls.key=pki/kubelet-serving.key]
  - name: rbn-extender-serving
    namespace: rbn-system
    type: kubernetes.io/tls
    files: [tls.crt=pki/extender-serving.crt, tls.key=pki/extender-serving.key]
  - name: rbn-registry
    namespace: rbn-system
    type: kubernetes.io/dockerconfigjson
    files: [.dockerconfigjson=pki/registry.json]
patches:
  - target: {kind: Service, name: rbn-extender, namespace: rbn-system}
    patch: |-
      - op: add
        path: /spec/clusterIP
        value: ${EXTENDER_IP}
  # The build hosts of this stack share this machine's network namespace with the worker node:
  # rbn-portal captures only what the worker's pods send (docs/services.md, "rbn-portal").
  - target: {kind: DaemonSet, name: rbn-portal, namespace: rbn-system}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --input-interface=${RBN_WORKER_BRIDGE}
EOF
  printf 'RBN_SCHEDULER_EXTENDER_URL=https://%s:10262\nRBN_SCHEDULER_EXTENDER_CA=%s\n' \
    "${EXTENDER_IP}" "${RBN_STATE}/cluster/pki/ca.crt" >"${OUT}/extender.env"
  echo "${OUT}"
}

# explain: why rbn's pods are not Ready (Deployments, pods, events, logs), on stderr.
explain() {
  local k=("$@") p
  {
    "${k[@]}" get deployments,daemonsets,pods -o wide
    echo "--- warning events in rbn-system:"
    "${k[@]}" get events --field-selector type=Warning --sort-by=.lastTimestamp | tail -n 20
    for p in $("${k[@]}" get pods -o name); do
      echo "--- logs of ${p} (last 20 lines):"
      "${k[@]}" logs "${p}" --all-containers --tail=20 2>&1 || true
    done
  } >&2 || true
}

cmd_wait() {
  local k=("${KUBECTL}" --kubeconfig="${RBN_STATE}/cluster/admin.kubeconfig" -n rbn-system)
  local timeout="${RBN_IN_CLUSTER_TIMEOUT:-180}" d
  for d in deployment/rbn-kubelet deployment/rbn-approver deployment/rbn-extender daemonset/rbn-portal; do
    if ! "${k[@]}" rollout status "${d}" --timeout="${timeout}s" >/dev/null 2>&1; then
      rbn::log "ERROR: ${d} in rbn-system is not Ready after ${timeout}s; what rbn-system says:"
      explain "${k[@]}"
      rbn::die "${d} in rbn-system is not Ready (see above: the pods' events say why, e.g. ImagePullBackOff for a wrong image)"
    fi
    rbn::log "${d} in rbn-system Ready"
  done
}

cmd_verify() {
  [[ -x "${KUBECTL}" ]] || rbn::die "no ${KUBECTL}: run hack/build-k8s.sh"
  local dir
  for dir in "${RBN_ROOT}/manifests" "${RBN_ROOT}/hack/manifests/local"; do
    "${KUBECTL}" kustomize "${dir}" >/dev/null || rbn::die "kubectl kustomize ${dir} failed"
    rbn::log "rendered ${dir#"${RBN_ROOT}"/}"
  done
  local kubeconfig="${RBN_STATE}/cluster/admin.kubeconfig"
  if ! "${KUBECTL}" --kubeconfig="${kubeconfig}" get --raw /readyz >/dev/null 2>&1; then
    rbn::log "no control plane answers with ${kubeconfig}: server-side checks skipped"
    return 0
  fi
  local k=("${KUBECTL}" --kubeconfig="${kubeconfig}")
  # Server-side dry-run does not create the namespace the other objects need.
  "${k[@]}" create namespace rbn-system --dry-run=client -o yaml | "${k[@]}" apply -f - >/dev/null
  local targets=("${RBN_ROOT}/manifests")
  [[ -f "${OUT}/kustomization.yaml" ]] && targets+=("${OUT}")
  for dir in "${targets[@]}"; do
    "${k[@]}" apply --dry-run=server -k "${dir}" >/dev/null || rbn::die "the apiserver refused ${dir}"
    rbn::log "the apiserver accepts ${dir}"
  done
  # Not in the kustomization: applied by operators who turn nodeIdentities off.
  local extra="${RBN_ROOT}/manifests/rbac/without-node-identities.yaml"
  "${k[@]}" apply --dry-run=server -f "${extra}" >/dev/null || rbn::die "the apiserver refused ${extra#"${RBN_ROOT}"/}"
  rbn::log "the apiserver accepts ${extra#"${RBN_ROOT}"/}"
}

case "${1:-}" in
  local) cmd_local ;;
  verify) cmd_verify ;;
  wait) cmd_wait ;;
  *) sed -n '2,/^source/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac
