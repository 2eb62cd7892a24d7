#!/usr/bin/env bash
# The local stack's monitoring, as operators run it beside rbn: a real Prometheus (Debian's
# package) and kube-state-metrics (built from source), both on this machine outside the cluster,
# scraping what kube-prometheus's ServiceMonitors and PodMonitors scrape:
# - every Node's kubelet endpoints at the Node's InternalIP and kubelet port (job "kubelet",
#   /metrics, /metrics/cadvisor, /metrics/probes, /metrics/resource, over TLS verified with the
#   cluster CA, with a service account token authorized for nodes/metrics), as
#   prometheus-operator's kubelet ServiceMonitor;
# - rbn-kubelet's and rbn-extender's pods at their port "metrics" (manifests/monitoring/podmonitor.yaml);
# - kube-state-metrics, with the Node labels rbn's rules read (manifests/monitoring/rules.yaml).
# Rule files are read from $RBN_STATE/monitoring/rules/*.yaml (POST /-/reload after writing one).
#   hack/monitoring.sh up     install and build if needed, start (idempotent)
#   hack/monitoring.sh env    print `export RBN_PROMETHEUS_URL=... RBN_PROMETHEUS_RULES=...`
#   hack/monitoring.sh down   stop both and remove their data
# RBN_PROMETHEUS_PORT and RBN_KSM_PORT pick the ports (defaults 19090, 19080).
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIR="${RBN_STATE}/monitoring"
PROM_PORT="${RBN_PROMETHEUS_PORT:-19090}"
KSM_PORT="${RBN_KSM_PORT:-19080}"
KSM_BIN="${RBN_CACHE}/kube-state-metrics-${KSM_VERSION}/kube-state-metrics"
KUBECONFIG="${KUBECONFIG:-${RBN_STATE}/cluster/admin.kubeconfig}"
kubectl() { "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" "$@"; }

# install_prometheus: Debian's package, without letting its maintainer scripts start the
# system's own Prometheus service (this one runs under rbn::start with the stack's config).
install_prometheus() {
  command -v prometheus >/dev/null && return 0
  command -v apt-get >/dev/null || rbn::die "no prometheus and no apt-get here"
  rbn::log "installing Debian's prometheus package"
  local guard=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "${guard}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${guard}" && chmod +x "${guard}" && created=1
  fi
  local apt_wait=(-o DPkg::Lock::Timeout=300) rc=0
  { apt-get "${apt_wait[@]}" update -qq &&
    apt-get "${apt_wait[@]}" install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends prometheus; } || rc=$?
  if ((created)); then rm -f "${guard}"; fi
  ((rc == 0)) || rbn::die "installing prometheus failed (exit ${rc})"
  command -v prometheus >/dev/null || rbn::die "the prometheus package installed no prometheus command"
}

# token ACCOUNT: a day's token of monitoring/ACCOUNT, written to $DIR/ACCOUNT.token.
token() {
  (umask 077 && kubectl -n monitoring create token "$1" --duration=24h >"${DIR}/$1.token")
}

# Debian's Prometheus is built without Kubernetes service discovery (its client-go is not
# packaged), so the targets come from files that a refresher process rewrites every 10 s from the
# cluster, as prometheus-operator's kubelet controller keeps the kube-system/kubelet Endpoints
# (every Node's InternalIP, port 10250) and its PodMonitors select pods: targets_kubelet.json
# (each Node's address and kubelet port, label node) and targets_rbn.json (rbn-kubelet's and
# rbn-extender's pods at their port "metrics", labels job and pod).
write_targets() {
  local nodes pods
  nodes="$(kubectl get nodes -o json)" || return 1
  pods="$(kubectl -n rbn-system get pods -o json)" || return 1
  python3 - "${DIR}" "${nodes}" "${pods}" <<'PY'
import json, os, sys
d, nodes, pods = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
kubelet = []
for n in nodes["items"]:
    ip = next((a["address"] for a in n["status"].get("addresses", []) if a["type"] == "InternalIP"), None)
    port = n["status"].get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port")
    if ip and port:
        kubelet.append({"targets": [f"{ip}:{port}"], "labels": {"node": n["metadata"]["name"]}})
rbn = []
for p in pods["items"]:
    app = p["metadata"].get("labels", {}).get("app.kubernetes.io/name")
    ip = p["status"].get("podIP")
    if app not in ("rbn-kubelet", "rbn-extender") or not ip or p["metadata"].get("deletionTimestamp"):
        continue
    for c in p["spec"]["containers"]:
        for port in c.get("ports", []):
            if port.get("name") == "metrics":
                rbn.append({"targets": [f"{ip}:{port['containerPort']}"], "labels": {"job": app, "pod": p["metadata"]["name"]}})
for name, groups in (("targets_kubelet.json", kubelet), ("targets_rbn.json", rbn)):
    tmp = os.path.join(d, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(groups, f)
    os.replace(tmp, os.path.join(d, name))
PY
}

# refresh: write_targets every 10 s, for rbn::start.
refresh() {
  while true; do
    write_targets || true
    sleep 10
  done
}

write_config() {
  local ca="${RBN_STATE}/cluster/pki/ca.crt"
  local kubelet_paths=(/metrics /metrics/cadvisor /metrics/probes /metrics/resource)
  {
    cat <<CFG
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files: [${DIR}/rules/*.yaml]
scrape_configs:
CFG
    local path name
    for path in "${kubelet_paths[@]}"; do
      name="kubelet${path//\//-}"
      cat <<CFG
  - job_name: ${name}
    scheme: https
    metrics_path: ${path}
    tls_config: {ca_file: ${ca}}
    authorization: {credentials_file: ${DIR}/prometheus.token}
    file_sd_configs: [{files: [${DIR}/targets_kubelet.json], refresh_interval: 10s}]
    relabel_configs:
      - {source_labels: [__metrics_path__], target_label: metrics_path}
      - {target_label: job, replacement: kubelet}
CFG
    done
    cat <<CFG
  - job_name: rbn
    file_sd_configs: [{files: [${DIR}/targets_rbn.json], refresh_interval: 10s}]
  - job_name: kube-state-metrics
    static_configs:
      - targets: [127.0.0.1:${KSM_PORT}]
CFG
  } >"${DIR}/prometheus.yml.tmp"
  mv -f "${DIR}/prometheus.yml.tmp" "${DIR}/prometheus.yml"
}

up() {
  install_prometheus
  "${RBN_ROOT}/hack/build-kube-state-metrics.sh"
  mkdir -p "${DIR}/rules" "${DIR}/data"
  kubectl apply -f "${RBN_ROOT}/hack/manifests/prometheus/rbac.yaml" >/dev/null
  token prometheus
  token kube-state-metrics
  if ! rbn::running kube-state-metrics; then
    rbn::port_in_use "${KSM_PORT}" && rbn::die "port ${KSM_PORT} is in use: set RBN_KSM_PORT"
    local server
    server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
    # Its own kubeconfig: the account's token, not the stack's admin.
    "${K8S_BIN}/kubectl" config --kubeconfig="${DIR}/ksm.kubeconfig" set-cluster stack --server="${server}" \
      --certificate-authority="${RBN_STATE}/cluster/pki/ca.crt" >/dev/null
    "${K8S_BIN}/kubectl" config --kubeconfig="${DIR}/ksm.kubeconfig" set-credentials ksm \
      --token="$(cat "${DIR}/kube-state-metrics.token")" >/dev/null
    "${K8S_BIN}/kubectl" config --kubeconfig="${DIR}/ksm.kubeconfig" set-context stack --cluster=stack --user=ksm >/dev/null
    "${K8S_BIN}/kubectl" config --kubeconfig="${DIR}/ksm.kubeconfig" use-context stack >/dev/null
    rbn::log "starting kube-state-metrics ${KSM_VERSION} on 127.0.0.1:${KSM_PORT} (log: ${DIR}/kube-state-metrics.log)"
    rbn::start kube-state-metrics "${DIR}/kube-state-metrics.log" "${KSM_BIN}" \
      --kubeconfig="${DIR}/ksm.kubeconfig" --host=127.0.0.1 --port="${KSM_PORT}" \
      --telemetry-host=127.0.0.1 --telemetry-port=$((KSM_PORT + 1)) \
      --metric-labels-allowlist='nodes=[rbn.dev/remote-build-node,kubernetes.io/arch]' --metric-opt-in-list=kube_pod_nodeselectors
    rbn::wait_for_daemon kube-state-metrics "kube-state-metrics on 127.0.0.1:${KSM_PORT}" 60 \
      curl -sSf --max-time 2 -o /dev/null "http://127.0.0.1:${KSM_PORT}/healthz" ||
      { tail -n 20 "${DIR}/kube-state-metrics.log" >&2; exit 1; }
  fi
  write_targets
  if ! rbn::running monitoring-targets; then
    rbn::start monitoring-targets "${DIR}/targets.log" "${BASH_SOURCE[0]}" refresh
  fi
  write_config
  if rbn::running prometheus; then
    curl -sSf -X POST "http://127.0.0.1:${PROM_PORT}/-/reload" >/dev/null
    return 0
  fi
  rbn::port_in_use "${PROM_PORT}" && rbn::die "port ${PROM_PORT} is in use: set RBN_PROMETHEUS_PORT"
  rbn::log "starting prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') on 127.0.0.1:${PROM_PORT} (log: ${DIR}/prometheus.log)"
  rbn::start prometheus "${DIR}/prometheus.log" prometheus --config.file="${DIR}/prometheus.yml" \
    --storage.tsdb.path="${DIR}/data" --web.listen-address="127.0.0.1:${PROM_PORT}" --web.enable-lifecycle
  rbn::wait_for_daemon prometheus "prometheus on 127.0.0.1:${PROM_PORT}" 60 \
    curl -sSf --max-time 2 -o /dev/null "http://127.0.0.1:${PROM_PORT}/-/ready" ||
    { tail -n 20 "${DIR}/prometheus.log" >&2; exit 1; }
}

case "${1:-}" in
  up) up ;;
  env)
    [[ -f "${DIR}/prometheus.yml" ]] || rbn::die "no monitoring: run hack/monitoring.sh up"
    echo "export RBN_PROMETHEUS_URL=http://127.0.0.1:${PROM_PORT} RBN_PROMETHEUS_RULES=${DIR}/rules"
    ;;
  refresh) refresh ;;
  down)
    rbn::stop monitoring-targets
    rbn::stop prometheus
    rbn::stop kube-state-metrics
    rm -rf "${DIR}"
    ;;
  *) rbn::die "usage: $0 up|env|down" ;;
esac
