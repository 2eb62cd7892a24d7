#!/usr/bin/env bash
# Brings up the whole local stack in the background: control plane (its
# kube-scheduler with rbn-extender), NODES build hosts, rbn-kubelet, one
# RemoteBuildNode per host, and one real worker node with kube-proxy and
# cluster DNS (hack/worker.sh; RBN_WORKER=0 leaves it out: one per machine).
# Last line printed: export KUBECONFIG=<path>.
# Stop it all with hack/dev-down.sh.
# RBN_EXTENDER_PORT picks rbn-extender's port (default: a free one, written to
# $RBN_STATE/extender/url); RBN_SCHEDULER_EXTENDER_IGNORABLE=false makes the
# scheduler wait for it instead of scheduling without it (see
# manifests/extender/kube-scheduler-config.yaml).
# RBN_S3=1 also starts a local S3 server (hack/s3.sh; built once, 2-4 minutes) for pods'
# rbn.dev/transfers; `hack/s3.sh env` prints its endpoint and credentials.
# RBN_KUBELET_PROFILING=1 makes local rbn-kubelet serve Go's profiles (/debug/pprof/) on its metrics address
# (enableProfiling; the address is in its log, "metrics listening").
# RBN_ISOLATED_HOSTS and RBN_ARM64_HOSTS (host indexes, hack/hosts.sh) make hosts isolated or
# emulated aarch64; RBN_UNREGISTERED_HOSTS (host indexes) starts hosts without registering them.
#
# rbn-kubelet, rbn-approver and rbn-extender run as pods on the worker node, from rbn's images (hack/image.sh
# push, to the stack's registry, which this then starts) and `kubectl apply -k` of the local
# overlay (hack/manifests.sh local), as operators run them. RBN_IN_CLUSTER=0 runs them as local
# processes instead (the development mode; so does RBN_WORKER=0, which has no worker node). The apiserver, the
# registry, the S3 server and the build hosts' sshd listen on the stack's address (hack/lib.sh),
# where pods reach them; kube-scheduler reaches rbn-extender at its Service's ClusterIP
# (RBN_EXTENDER_CLUSTER_IP, default 10.0.0.250) over HTTPS. RBN_IN_CLUSTER_TIMEOUT (default 180)
# bounds the wait for rbn's pods to be Ready (hack/manifests.sh wait); past it, their state, events
# and logs are printed and dev-up fails.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${NODES:-2}"
KUBELET_DIR="${RBN_STATE}/kubelet"
EXTENDER_DIR="${RBN_STATE}/extender"
kubectl() { "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" "$@"; }

# wait_nodes: every registered build host's node (hack/register-hosts.sh) registered and Ready.
wait_nodes() {
  rbn::log "waiting for the build hosts' nodes to be Ready"
  local dir name
  for dir in $("${RBN_ROOT}/hack/hosts.sh" list); do
    rbn::host_unregistered "${dir##*/host}" && continue
    name="$(. "${dir}/host.env" && echo "${NAME}")"
    rbn::wait_for "node ${name} registered" 60 kubectl get node "${name}" || return 1
    kubectl wait --for=condition=Ready "node/${name}" --timeout=90s >/dev/null || return 1
  done
}

# up_metrics_server: metrics-server (hack/manifests/metrics-server), once the resource metrics API
# answers: `kubectl top` works when dev-up returns.
up_metrics_server() {
  rbn::log "installing metrics-server ${METRICS_SERVER_VERSION}"
  METRICS_SERVER_IMAGE="rbn.local/metrics-server:${METRICS_SERVER_VERSION}" \
    envsubst '${METRICS_SERVER_IMAGE}' <"${RBN_ROOT}/hack/manifests/metrics-server/metrics-server.yaml" |
    kubectl apply -f - >/dev/null
  kubectl -n kube-system rollout status deployment/metrics-server --timeout=120s >/dev/null &&
    rbn::wait_for "the metrics.k8s.io APIService available" 60 \
      kubectl wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=2s ||
    { kubectl -n kube-system logs deployment/metrics-server --tail=30 >&2 || true; rbn::die "metrics-server did not start"; }
}

# up_in_cluster: the control plane, hosts, registry and worker node, then rbn from its manifests.
up_in_cluster() {
  [[ "${RBN_WORKER:-1}" != 0 ]] || rbn::die "RBN_IN_CLUSTER=1 runs rbn on the worker node: unset RBN_WORKER=0"
  "${RBN_ROOT}/hack/build-coredns.sh"
  "${RBN_ROOT}/hack/build-metrics-server.sh"
  local address extender_ip="${RBN_EXTENDER_CLUSTER_IP:-10.0.0.250}"
  address="$(rbn::stack_link_up)"
  export RBN_APISERVER_ADDRESS="${address}"
  export RBN_SCHEDULER_EXTENDER_URL="https://${extender_ip}:10262"
  export RBN_SCHEDULER_EXTENDER_CA="${RBN_STATE}/cluster/pki/ca.crt"
  "${RBN_ROOT}/hack/cluster.sh" up
  eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  "${RBN_ROOT}/hack/registry.sh" up >/dev/null
  "${RBN_ROOT}/hack/hosts.sh" up "${NODES}"
  if [[ "${RBN_S3:-0}" == 1 ]]; then
    "${RBN_ROOT}/hack/s3.sh" up
  fi
  "${RBN_ROOT}/hack/worker.sh" up
  rbn::log "building rbn's images and pushing them to the stack's registry"
  "${RBN_ROOT}/hack/image.sh" push >/dev/null
  local dir
  dir="$("${RBN_ROOT}/hack/manifests.sh" local)"
  rbn::log "installing rbn: kubectl apply -k ${dir}"
  kubectl apply -k "${dir}" >/dev/null
  mkdir -p "${EXTENDER_DIR}"
  echo "${RBN_SCHEDULER_EXTENDER_URL}" >"${EXTENDER_DIR}/url"
  "${RBN_ROOT}/hack/manifests.sh" wait
  "${RBN_ROOT}/hack/register-hosts.sh"
  wait_nodes || { kubectl -n rbn-system logs deployment/rbn-kubelet --tail=30 >&2 || true; rbn::die "the build hosts' nodes did not become Ready"; }
  up_metrics_server
  kubectl get nodes -o wide >&2
  kubectl -n rbn-system get pods -o wide >&2
  echo "export KUBECONFIG=${KUBECONFIG}"
}

"${RBN_ROOT}/hack/install-deps.sh"
"${RBN_ROOT}/hack/build-k8s.sh"
rbn::record_mode
if rbn::in_cluster; then
  up_in_cluster
  exit 0
fi

if [[ "${RBN_WORKER:-1}" != 0 ]]; then
  "${RBN_ROOT}/hack/build-coredns.sh"
  "${RBN_ROOT}/hack/build-metrics-server.sh"
fi
"${RBN_ROOT}/hack/build.sh" rbn-kubelet rbn-extender
# The scheduler is configured with rbn-extender's URL now and reaches it once
# it is started below (until then an ignorable extender is skipped).
rbn::stop rbn-extender
EXTENDER_PORT="${RBN_EXTENDER_PORT:-}"
if [[ -z "${EXTENDER_PORT}" ]] || rbn::port_in_use "${EXTENDER_PORT}"; then
  EXTENDER_PORT="$(rbn::free_port "${RBN_APISERVER_PORT:-16443}" "${RBN_KUBELET_PORT:-10250}")"
fi
export RBN_SCHEDULER_EXTENDER_URL="http://127.0.0.1:${EXTENDER_PORT}"
# Nothing listens there until rbn-extender starts: keep the control plane off it.
export RBN_RESERVED_PORTS="${RBN_RESERVED_PORTS:-} ${EXTENDER_PORT}"
"${RBN_ROOT}/hack/cluster.sh" up
eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
"${RBN_ROOT}/hack/hosts.sh" up "${NODES}"
if [[ "${RBN_S3:-0}" == 1 ]]; then
  "${RBN_ROOT}/hack/s3.sh" up
fi

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
# The admission policies fence that user as they fence the service account.
sed 's/system:serviceaccount:rbn-system:rbn-kubelet/rbn-kubelet/' "${RBN_ROOT}/manifests/rbac/admission.yaml" | kubectl apply -f - >/dev/null
rbn::wait_for "CRD remotebuildnodes.rbn.dev established" 30 \
  "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" wait --for=condition=Established crd/remotebuildnodes.rbn.dev --timeout=1s

rbn::log "starting rbn-extender on ${RBN_SCHEDULER_EXTENDER_URL} (log: ${EXTENDER_DIR}/rbn-extender.log)"
kubectl apply -f "${RBN_ROOT}/manifests/extender/rbac.yaml" >/dev/null
kubectl create clusterrolebinding rbn-extender-local-user --clusterrole=rbn-extender --user=rbn-extender \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
mkdir -p "${EXTENDER_DIR}"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "${EXTENDER_DIR}/client.key"
openssl req -new -key "${EXTENDER_DIR}/client.key" -subj "/CN=rbn-extender" 2>/dev/null |
  openssl x509 -req -CA "${RBN_CA_CERT}" -CAkey "${RBN_CA_KEY}" -CAcreateserial -days 30 -out "${EXTENDER_DIR}/client.crt" 2>/dev/null
extender_kubectl() { "${K8S_BIN}/kubectl" --kubeconfig="${EXTENDER_DIR}/kubeconfig" "$@" >/dev/null; }
extender_kubectl config set-cluster rbn --server="${RBN_APISERVER_URL}" --certificate-authority="${RBN_CA_CERT}" --embed-certs=true
extender_kubectl config set-credentials rbn-extender --client-certificate="${EXTENDER_DIR}/client.crt" --client-key="${EXTENDER_DIR}/client.key" --embed-certs=true
extender_kubectl config set-context rbn --cluster=rbn --user=rbn-extender
extender_kubectl config use-context rbn
cat >"${EXTENDER_DIR}/config.yaml" <<YAML
apiVersion: rbn.dev/v1alpha1
kind: ExtenderConfiguration
kubeconfig: ${EXTENDER_DIR}/kubeconfig
listenAddress: 127.0.0.1
port: ${EXTENDER_PORT}
# Local processes of several stacks share this machine: a port the system picks (in the log).
metricsBindAddress: 127.0.0.1:0
logLevel: ${RBN_LOG_LEVEL:-info}
YAML
echo "${RBN_SCHEDULER_EXTENDER_URL}" >"${EXTENDER_DIR}/url"
rbn::start rbn-extender "${EXTENDER_DIR}/rbn-extender.log" "${RBN_ROOT}/bin/rbn-extender" --config="${EXTENDER_DIR}/config.yaml"
rbn::wait_for_daemon rbn-extender "rbn-extender ${RBN_SCHEDULER_EXTENDER_URL}/readyz" 30 \
  curl -fsS --max-time 2 "${RBN_SCHEDULER_EXTENDER_URL}/readyz" ||
  { tail -n 20 "${EXTENDER_DIR}/rbn-extender.log" >&2; exit 1; }

# rbn-approver approves the client certificates of the nodes rbn-kubelet
# serves (config nodeIdentities, on by default); on this stack with the admin's credentials,
# in a cluster with its own account (manifests/approver).
rbn::stop rbn-approver
rbn::log "starting rbn-approver (log: ${KUBELET_DIR}/rbn-approver.log)"
rbn::start rbn-approver "${KUBELET_DIR}/rbn-approver.log" "${RBN_ROOT}/bin/rbn-kubelet" approver \
  --kubeconfig="${KUBECONFIG}" --requester=rbn-kubelet

# The apiserver proxies node requests (kubectl get --raw /api/v1/nodes/N/proxy/...,
# used for stats) only to a non-loopback address. Each stack gets its own veth
# pair (no dummy interfaces in this kernel) with a private address on one end:
# the traffic stays on this machine, on an interface the stack made, and
# dev-down removes it.
NODE_ADDRESS="$(rbn::stack_link_up)"
rbn::log "issuing the kubelet API serving certificate (node address ${NODE_ADDRESS})"
mkdir -p "${KUBELET_DIR}"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "${KUBELET_DIR}/serving.key"
openssl req -new -key "${KUBELET_DIR}/serving.key" -subj "/CN=rbn-kubelet" -out "${KUBELET_DIR}/serving.csr" 2>/dev/null
printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "${NODE_ADDRESS}" >"${KUBELET_DIR}/serving.ext"
openssl x509 -req -in "${KUBELET_DIR}/serving.csr" -CA "${RBN_CA_CERT}" -CAkey "${RBN_CA_KEY}" -CAcreateserial \
  -days 30 -extfile "${KUBELET_DIR}/serving.ext" -out "${KUBELET_DIR}/serving.crt" 2>/dev/null

KUBELET_PORT="${RBN_KUBELET_PORT:-10250}"
rbn::port_in_use "${KUBELET_PORT}" && KUBELET_PORT="$(rbn::free_port)"
# podNetwork: as manifests/ ship it (the isolated hosts' /30s of 100.64.0.0/10 stay below 100.96 for
# SSH ports under 32768, hack/hosts.sh).
# egress: the stack's S3 server and registry listen on loopback (or on the stack's link address),
# which rbn-kubelet refuses to fetch from for pods unless allowed (docs/operations.md, "Egress").
# The e2e replicas (e2e/framework/replica.go) copy this file.
cat >"${KUBELET_DIR}/config.yaml" <<YAML
apiVersion: rbn.dev/v1alpha1
kind: KubeletConfiguration
kubeconfig: ${RBN_KUBELET_KUBECONFIG}
nodeAddress: ${NODE_ADDRESS}
listenAddress: ${NODE_ADDRESS}
kubeletPort: ${KUBELET_PORT}
tlsCertFile: ${KUBELET_DIR}/serving.crt
tlsKeyFile: ${KUBELET_DIR}/serving.key
clientCAFile: ${RBN_CA_CERT}
metricsBindAddress: 127.0.0.1:0
logLevel: ${RBN_LOG_LEVEL:-info}
egress: {allowedCIDRs: [127.0.0.0/8, ${RBN_STACK_NET}.0/24, ${NODE_ADDRESS}]}
podNetwork: {cidr: 100.96.0.0/16}
clusterServices: {forwarderDir: ${RBN_ROOT}/bin}
enableProfiling: $([[ "${RBN_KUBELET_PROFILING:-0}" == 1 ]] && echo true || echo false)
YAML

"${RBN_ROOT}/hack/kubelet.sh" restart

"${RBN_ROOT}/hack/register-hosts.sh"

wait_nodes
if [[ "${RBN_WORKER:-1}" != 0 ]]; then
  "${RBN_ROOT}/hack/worker.sh" up
fi
kubectl get nodes -o wide >&2
echo "export KUBECONFIG=${KUBECONFIG}"
