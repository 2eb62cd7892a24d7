#!/usr/bin/env bash
# Brings up the whole local stack in the background: control plane, NODES build
# hosts, rbn-kubelet, and one RemoteBuildNode per host. Last line printed:
# export KUBECONFIG=<path>. Stop it all with hack/dev-down.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${NODES:-2}"
KUBELET_DIR="${RBN_STATE}/kubelet"

"${RBN_ROOT}/hack/install-deps.sh"
"${RBN_ROOT}/hack/build-k8s.sh"
"${RBN_ROOT}/hack/build.sh" rbn-kubelet
"${RBN_ROOT}/hack/cluster.sh" up
eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
"${RBN_ROOT}/hack/hosts.sh" up "${NODES}"

kubectl() { "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" "$@"; }

rbn::log "installing CRD and RBAC"
kubectl apply -f "${RBN_ROOT}/manifests/crd/" >/dev/null
kubectl apply -f "${RBN_ROOT}/manifests/rbac/rbac.yaml" >/dev/null
# Locally rbn-kubelet authenticates as user "rbn-kubelet" (client certificate)
# instead of the service account: bind the same roles to it.
kubectl apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: rbn-kubelet-local-user}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: rbn-kubelet}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: rbn-kubelet}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rbn-kubelet-local-user, namespace: kube-node-lease}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rbn-kubelet-node-lease}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: rbn-kubelet}]
YAML
rbn::wait_for "CRD remotebuildnodes.rbn.dev established" 30 \
  "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" wait --for=condition=Established crd/remotebuildnodes.rbn.dev --timeout=1s

rbn::log "issuing the kubelet API serving certificate"
mkdir -p "${KUBELET_DIR}"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "${KUBELET_DIR}/serving.key"
openssl req -new -key "${KUBELET_DIR}/serving.key" -subj "/CN=rbn-kubelet" -out "${KUBELET_DIR}/serving.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' >"${KUBELET_DIR}/serving.ext"
openssl x509 -req -in "${KUBELET_DIR}/serving.csr" -CA "${RBN_CA_CERT}" -CAkey "${RBN_CA_KEY}" -CAcreateserial \
  -days 30 -extfile "${KUBELET_DIR}/serving.ext" -out "${KUBELET_DIR}/serving.crt" 2>/dev/null

KUBELET_PORT="${RBN_KUBELET_PORT:-10250}"
rbn::port_in_use "${KUBELET_PORT}" && KUBELET_PORT="$(rbn::free_port)"
cat >"${KUBELET_DIR}/config.yaml" <<YAML
apiVersion: rbn.dev/v1alpha1
kind: KubeletConfiguration
kubeconfig: ${RBN_KUBELET_KUBECONFIG}
nodeAddress: 127.0.0.1
listenAddress: 127.0.0.1
kubeletPort: ${KUBELET_PORT}
tlsCertFile: ${KUBELET_DIR}/serving.crt
tlsKeyFile: ${KUBELET_DIR}/serving.key
clientCAFile: ${RBN_CA_CERT}
logLevel: ${RBN_LOG_LEVEL:-info}
YAML

"${RBN_ROOT}/hack/kubelet.sh" restart

"${RBN_ROOT}/hack/register-hosts.sh"

rbn::log "waiting for ${NODES} node(s) to be Ready"
for dir in $("${RBN_ROOT}/hack/hosts.sh" list); do
  name="$(. "${dir}/host.env" && echo "${NAME}")"
  rbn::wait_for "node ${name} registered" 60 kubectl get node "${name}"
  kubectl wait --for=condition=Ready "node/${name}" --timeout=90s >/dev/null
done
kubectl get nodes -o wide >&2
echo "export KUBECONFIG=${KUBECONFIG}"
