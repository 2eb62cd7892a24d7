#!/usr/bin/env bash
# A real Kubernetes control plane on loopback (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) from the binaries hack/build-k8s.sh puts in $K8S_BIN.
#
# Usage: hack/cluster.sh up|down|env
#   up    (re)creates PKI and kubeconfigs under $RBN_STATE/cluster, starts everything and waits until
#         /readyz is ok, the scheduler and controller-manager are healthy and the `default`
#         ServiceAccount exists. A cluster already running is stopped first: every `up` starts fresh.
#   down  stops the processes by pid and removes etcd data; idempotent.
#   env   prints `export VAR=...` lines for eval (KUBECONFIG, RBN_KUBELET_KUBECONFIG, CA paths, ...).
#
# Environment:
#   RBN_APISERVER_PORT               secure port on 127.0.0.1 (default 16443)
#   RBN_APISERVER_ADDRESS            the apiserver's bind and advertise address (default 127.0.0.1);
#                                    another address (the in-cluster mode gives the stack's, see
#                                    hack/lib.sh) is in its certificate and kubeconfigs, and the
#                                    apiserver keeps the `kubernetes` Service's endpoints at it, so
#                                    that pods reach it through 10.0.0.1
#   RBN_SCHEDULER_EXTENDER_URL       if set, an extender with this urlPrefix is configured
#   RBN_SCHEDULER_EXTENDER_CA        CA file that verifies the extender's https certificate
#   RBN_SCHEDULER_EXTENDER_IGNORABLE ignorable: for that extender (default true)
#
# Only `env` writes to stdout; logs go to stderr, daemon logs to $RBN_STATE/cluster/logs.
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_DIR="${RBN_STATE}/cluster"
PKI_DIR="${CLUSTER_DIR}/pki"
DATA_DIR="${CLUSTER_DIR}/data"
LOG_DIR="${CLUSTER_DIR}/logs"
PORTS_FILE="${CLUSTER_DIR}/ports.env"
ADMIN_KUBECONFIG="${CLUSTER_DIR}/admin.kubeconfig"
RBN_KUBELET_KUBECONFIG="${CLUSTER_DIR}/rbn-kubelet.kubeconfig"
SCHEDULER_KUBECONFIG="${CLUSTER_DIR}/kube-scheduler.kubeconfig"
CM_KUBECONFIG="${CLUSTER_DIR}/kube-controller-manager.kubeconfig"
SCHEDULER_CONFIG="${SCHEDULER_CONFIG:-${CLUSTER_DIR}/kube-scheduler.yaml}"
APISERVER_PORT="${RBN_APISERVER_PORT:-16443}"
APISERVER_ADDRESS="${RBN_APISERVER_ADDRESS:-127.0.0.1}"
SERVICE_CIDR="10.0.0.0/24"
KUBECTL="${K8S_BIN}/kubectl"
# Stop order; start order is the reverse.
COMPONENTS=(kube-scheduler kube-controller-manager kube-apiserver etcd)

# ---------------------------------------------------------------------------------------------
# PKI: ECDSA P-256 keys, PKCS#8 PEM ("BEGIN PRIVATE KEY"), certificates signed by ca.crt/ca.key.

# sign NAME SUBJECT EXTENSIONS: key + certificate NAME.{key,crt} in $PKI_DIR, signed by the CA.
sign() { rbn::sign_cert "${PKI_DIR}" "$1" "$2" "$3" "${PKI_DIR}/ca.crt" "${PKI_DIR}/ca.key"; }

client_ext() {
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth"
}

server_ext() { # server_ext SAN
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
    "subjectAltName=$1"
}

make_pki() {
  mkdir -p "${PKI_DIR}"
  rbn::log "generating PKI in ${PKI_DIR}"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "${PKI_DIR}/ca.key" -out "${PKI_DIR}/ca.crt" \
    -days 3650 -sha256 -subj "/CN=rbn-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
    2>>"${LOG_DIR}/pki.log"
  chmod 600 "${PKI_DIR}/ca.key"

  local extra_ip=""
  [[ "${APISERVER_ADDRESS}" == 127.0.0.1 ]] || extra_ip="IP:${APISERVER_ADDRESS},"
  sign apiserver "/CN=kube-apiserver" "$(server_ext "${extra_ip}IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local")"
  # Serving certs for the scheduler and controller-manager so their /healthz is checked with our CA.
  sign kube-scheduler-serving "/CN=kube-scheduler" "$(server_ext "IP:127.0.0.1,DNS:localhost")"
  sign kube-controller-manager-serving "/CN=kube-controller-manager" "$(server_ext "IP:127.0.0.1,DNS:localhost")"

  sign admin "/O=system:masters/CN=rbn-admin" "$(client_ext)"
  sign kube-scheduler "/CN=system:kube-scheduler" "$(client_ext)"
  sign kube-controller-manager "/CN=system:kube-controller-manager" "$(client_ext)"
  sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$(client_ext)"
  # rbn-kubelet: no group on purpose, RBAC for user "rbn-kubelet" is applied separately.
  sign rbn-kubelet "/CN=rbn-kubelet" "$(client_ext)"

  # The aggregation layer (metrics.k8s.io from metrics-server): the apiserver proxies to an
  # extension apiserver with a client certificate of its own CA, whose CN the extension trusts
  # to carry the user in request headers. A CA apart from the cluster's, so that no other client
  # certificate can assert those headers.
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "${PKI_DIR}/front-proxy-ca.key" \
    -out "${PKI_DIR}/front-proxy-ca.crt" -days 3650 -sha256 -subj "/CN=rbn-local-front-proxy-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyCertSign,cRLSign" \
    2>>"${LOG_DIR}/pki.log"
  chmod 600 "${PKI_DIR}/front-proxy-ca.key"
  rbn::sign_cert "${PKI_DIR}" front-proxy-client "/CN=front-proxy-client" "$(client_ext)" \
    "${PKI_DIR}/front-proxy-ca.crt" "${PKI_DIR}/front-proxy-ca.key"

  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "${PKI_DIR}/sa.key" 2>>"${LOG_DIR}/pki.log"
  openssl pkey -in "${PKI_DIR}/sa.key" -pubout -out "${PKI_DIR}/sa.pub" 2>>"${LOG_DIR}/pki.log"
  chmod 600 "${PKI_DIR}/sa.key"
}

# write_kubeconfig FILE CERT_NAME USER
write_kubeconfig() {
  local file="$1" cert="$2" user="$3"
  cat >"${file}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rbn
  cluster:
    server: https://${APISERVER_ADDRESS}:${APISERVER_PORT}
    certificate-authority-data: $(base64 -w0 "${PKI_DIR}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 "${PKI_DIR}/${cert}.crt")
    client-key-data: $(base64 -w0 "${PKI_DIR}/${cert}.key")
contexts:
- name: ${user}@rbn
  context:
    cluster: rbn
    user: ${user}
current-context: ${user}@rbn
EOF
  chmod 600 "${file}.tmp"
  mv -f "${file}.tmp" "${file}"
}

write_scheduler_config() {
  cat >"${SCHEDULER_CONFIG}" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: ${SCHEDULER_KUBECONFIG}
leaderElection:
  leaderElect: false
EOF
  if [[ -n "${RBN_SCHEDULER_EXTENDER_URL:-}" ]]; then
    local ignorable="${RBN_SCHEDULER_EXTENDER_IGNORABLE:-true}"
    [[ "${ignorable}" == true || "${ignorable}" == false ]] ||
      rbn::die "RBN_SCHEDULER_EXTENDER_IGNORABLE must be true or false, not '${ignorable}'"
    cat >>"${SCHEDULER_CONFIG}" <<EOF
extenders:
- urlPrefix: "${RBN_SCHEDULER_EXTENDER_URL}"
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 1
  nodeCacheCapable: true
  ignorable: ${ignorable}
  httpTimeout: 1s
EOF
    if [[ -n "${RBN_SCHEDULER_EXTENDER_CA:-}" ]]; then
      printf '  tlsConfig:\n    caFile: %s\n' "${RBN_SCHEDULER_EXTENDER_CA}" >>"${SCHEDULER_CONFIG}"
    fi
    rbn::log "scheduler extender ${RBN_SCHEDULER_EXTENDER_URL} (ignorable: ${ignorable})"
  fi
}

# ---------------------------------------------------------------------------------------------
# health checks (argv for rbn::wait_for)

https_ok() { # https_ok URL [curl args...]: 200 and body "ok"
  local url="$1"; shift
  [[ "$(curl -fsS --max-time 2 --cacert "${PKI_DIR}/ca.crt" "$@" "${url}")" == ok ]]
}

etcd_ok() { [[ "$(curl -fsS --max-time 2 "http://127.0.0.1:${ETCD_CLIENT_PORT}/health")" == *'"health":"true"'* ]]; }

apiserver_ok() {
  https_ok "https://${APISERVER_ADDRESS}:${APISERVER_PORT}/readyz" \
    --cert "${PKI_DIR}/admin.crt" --key "${PKI_DIR}/admin.key"
}

# fail_start COMPONENT: explain, show the log tail, stop everything, exit non-zero.
fail_start() {
  rbn::log "${1} did not become ready; last lines of ${LOG_DIR}/${1}.log:"
  tail -n 25 "${LOG_DIR}/${1}.log" >&2 || true
  cluster_down
  exit 1
}

# ---------------------------------------------------------------------------------------------

cluster_down() {
  local c stopped=() jobs=()
  for c in "${COMPONENTS[@]}"; do
    if rbn::running "${c}"; then stopped+=("${c}"); fi
  done
  # The apiserver's clients and the apiserver in parallel, then etcd (the apiserver shuts down
  # gracefully only while etcd answers). In parallel because each stop can take ~2 s here: the
  # exited daemon stays a zombie (kill -0 succeeds) until PID 1 reaps it.
  for c in "${COMPONENTS[@]}"; do
    [[ "${c}" == etcd ]] && continue
    rbn::stop "${c}" &
    jobs+=("$!")
  done
  if ((${#jobs[@]})); then wait "${jobs[@]}"; fi
  rbn::stop etcd
  rm -rf "${DATA_DIR}"
  if ((${#stopped[@]})); then rbn::log "stopped ${stopped[*]}"; fi
}

cluster_up() {
  local c
  for c in etcd "${K8S_BINARIES[@]}"; do
    [[ -x "${K8S_BIN}/${c}" ]] || rbn::die "${K8S_BIN}/${c} missing: run hack/build-k8s.sh"
  done
  for c in "${COMPONENTS[@]}"; do
    if rbn::running "${c}"; then
      rbn::log "a cluster is running: stopping it first"
      break
    fi
  done
  cluster_down
  rbn::port_in_use "${APISERVER_PORT}" &&
    rbn::die "port ${APISERVER_PORT} is in use (set RBN_APISERVER_PORT to another port)"

  local start=${SECONDS}
  rm -rf "${CLUSTER_DIR}"
  mkdir -p "${PKI_DIR}" "${DATA_DIR}" "${LOG_DIR}"

  ETCD_CLIENT_PORT="$(rbn::free_port "${APISERVER_PORT}")"
  ETCD_PEER_PORT="$(rbn::free_port "${APISERVER_PORT}" "${ETCD_CLIENT_PORT}")"
  CM_PORT="$(rbn::free_port "${APISERVER_PORT}" "${ETCD_CLIENT_PORT}" "${ETCD_PEER_PORT}")"
  SCHEDULER_PORT="$(rbn::free_port "${APISERVER_PORT}" "${ETCD_CLIENT_PORT}" "${ETCD_PEER_PORT}" "${CM_PORT}")"
  printf '%s=%s\n' APISERVER_ADDRESS "${APISERVER_ADDRESS}" APISERVER_PORT "${APISERVER_PORT}" ETCD_CLIENT_PORT "${ETCD_CLIENT_PORT}" \
    ETCD_PEER_PORT "${ETCD_PEER_PORT}" CM_PORT "${CM_PORT}" SCHEDULER_PORT "${SCHEDULER_PORT}" >"${PORTS_FILE}"

  make_pki
  write_kubeconfig "${ADMIN_KUBECONFIG}" admin rbn-admin
  write_kubeconfig "${RBN_KUBELET_KUBECONFIG}" rbn-kubelet rbn-kubelet
  write_kubeconfig "${SCHEDULER_KUBECONFIG}" kube-scheduler system:kube-scheduler
  write_kubeconfig "${CM_KUBECONFIG}" kube-controller-manager system:kube-controller-manager
  write_scheduler_config

  # If anything below fails or is interrupted, leave no process behind.
  trap 'cluster_down' ERR
  trap 'cluster_down; exit 130' INT TERM

  rbn::log "starting etcd on 127.0.0.1:${ETCD_CLIENT_PORT}"
  rbn::start etcd "${LOG_DIR}/etcd.log" "${K8S_BIN}/etcd" \
    --name=rbn \
    --data-dir="${DATA_DIR}/etcd" \
    --listen-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --advertise-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster="rbn=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster-state=new \
    --unsafe-no-fsync
  rbn::wait_for_daemon etcd "etcd health" 30 etcd_ok || fail_start etcd

  # On loopback nothing may be written to the `kubernetes` Service's endpoints (the apiserver
  # refuses a loopback advertise address there): no reconciler. Elsewhere, its own lease-based one.
  local reconciler=none
  [[ "${APISERVER_ADDRESS}" == 127.0.0.1 ]] || reconciler=lease
  rbn::log "starting kube-apiserver on https://${APISERVER_ADDRESS}:${APISERVER_PORT}"
  rbn::start kube-apiserver "${LOG_DIR}/kube-apiserver.log" "${K8S_BIN}/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --bind-address="${APISERVER_ADDRESS}" \
    --advertise-address="${APISERVER_ADDRESS}" \
    --secure-port="${APISERVER_PORT}" \
    --cert-dir="${PKI_DIR}" \
    --tls-cert-file="${PKI_DIR}/apiserver.crt" \
    --tls-private-key-file="${PKI_DIR}/apiserver.key" \
    --client-ca-file="${PKI_DIR}/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${PKI_DIR}/sa.pub" \
    --service-account-signing-key-file="${PKI_DIR}/sa.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --endpoint-reconciler-type="${reconciler}" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="${PKI_DIR}/apiserver-kubelet-client.crt" \
    --kubelet-client-key="${PKI_DIR}/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="${PKI_DIR}/ca.crt" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --requestheader-client-ca-file="${PKI_DIR}/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${PKI_DIR}/front-proxy-client.crt" \
    --proxy-client-key-file="${PKI_DIR}/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --allow-privileged=true
  rbn::wait_for_daemon kube-apiserver "kube-apiserver /readyz" 60 apiserver_ok || fail_start kube-apiserver

  rbn::log "starting kube-controller-manager (healthz on 127.0.0.1:${CM_PORT})"
  rbn::start kube-controller-manager "${LOG_DIR}/kube-controller-manager.log" "${K8S_BIN}/kube-controller-manager" \
    --kubeconfig="${CM_KUBECONFIG}" \
    --authentication-kubeconfig="${CM_KUBECONFIG}" \
    --authorization-kubeconfig="${CM_KUBECONFIG}" \
    --bind-address=127.0.0.1 \
    --secure-port="${CM_PORT}" \
    --tls-cert-file="${PKI_DIR}/kube-controller-manager-serving.crt" \
    --tls-private-key-file="${PKI_DIR}/kube-controller-manager-serving.key" \
    --service-account-private-key-file="${PKI_DIR}/sa.key" \
    --root-ca-file="${PKI_DIR}/ca.crt" \
    --cluster-signing-cert-file="${PKI_DIR}/ca.crt" \
    --cluster-signing-key-file="${PKI_DIR}/ca.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --use-service-account-credentials=true \
    --controllers='*' \
    --leader-elect=false \
    --node-monitor-period=5s \
    --node-monitor-grace-period=40s

  rbn::log "starting kube-scheduler (healthz on 127.0.0.1:${SCHEDULER_PORT}, config ${SCHEDULER_CONFIG})"
  rbn::start kube-scheduler "${LOG_DIR}/kube-scheduler.log" "${K8S_BIN}/kube-scheduler" \
    --config="${SCHEDULER_CONFIG}" \
    --authentication-kubeconfig="${SCHEDULER_KUBECONFIG}" \
    --authorization-kubeconfig="${SCHEDULER_KUBECONFIG}" \
    --bind-address=127.0.0.1 \
    --secure-port="${SCHEDULER_PORT}" \
    --tls-cert-file="${PKI_DIR}/kube-scheduler-serving.crt" \
    --tls-private-key-file="${PKI_DIR}/kube-scheduler-serving.key" \
    --leader-elect=false

  rbn::wait_for_daemon kube-controller-manager "kube-controller-manager /healthz" 60 \
    https_ok "https://127.0.0.1:${CM_PORT}/healthz" || fail_start kube-controller-manager
  rbn::wait_for_daemon kube-scheduler "kube-scheduler /healthz" 60 \
    https_ok "https://127.0.0.1:${SCHEDULER_PORT}/healthz" || fail_start kube-scheduler
  rbn::wait_for_daemon kube-controller-manager "ServiceAccount default/default (controller-manager at work)" 60 \
    "${KUBECTL}" --kubeconfig="${ADMIN_KUBECONFIG}" get serviceaccount default --namespace=default ||
    fail_start kube-controller-manager

  trap - ERR INT TERM
  rbn::log "control plane up in $((SECONDS - start))s: eval \"\$(hack/cluster.sh env)\""
}

cluster_env() {
  [[ -f "${PORTS_FILE}" ]] || rbn::die "no cluster state in ${CLUSTER_DIR}: run hack/cluster.sh up"
  local port address
  port="$(sed -n 's/^APISERVER_PORT=//p' "${PORTS_FILE}")"
  address="$(sed -n 's/^APISERVER_ADDRESS=//p' "${PORTS_FILE}")"
  printf 'export %s=%q\n' \
    KUBECONFIG "${ADMIN_KUBECONFIG}" \
    RBN_KUBELET_KUBECONFIG "${RBN_KUBELET_KUBECONFIG}" \
    RBN_CLUSTER_DIR "${CLUSTER_DIR}" \
    RBN_CA_CERT "${PKI_DIR}/ca.crt" \
    RBN_CA_KEY "${PKI_DIR}/ca.key" \
    RBN_APISERVER_URL "https://${address:-127.0.0.1}:${port}" \
    RBN_SCHEDULER_CONFIG "${SCHEDULER_CONFIG}" \
    K8S_BIN "${K8S_BIN}"
  # shellcheck disable=SC2016 # ${PATH} is for the shell that evals this
  printf 'export PATH=%q:"${PATH}"\n' "${K8S_BIN}"
}

K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

case "${1:-}" in
  up) cluster_up ;;
  down) cluster_down ;;
  env) cluster_env ;;
  *) rbn::die "usage: $0 up|down|env" ;;
esac
