#!/usr/bin/env bash
# One real worker node for the local stack: containerd (Debian's 1.6), kubelet and kube-proxy
# ($K8S_VERSION, built by hack/build-k8s.sh), Debian's CNI plugins (bridge + host-local) and
# CoreDNS (hack/build-coredns.sh) as a Deployment on the node behind the cluster DNS Service;
# metrics-server's image (hack/build-metrics-server.sh) for hack/dev-up.sh to run.
# The recipe and its pitfalls: ../shared/docs/platform-notes.md section 6, docs/development.md.
#
# containerd pulls from the stack's registry (hack/registry.sh, if up before the worker) as a
# plain-HTTP mirror: rbn's own images in the in-cluster mode (hack/dev-up.sh).
#
# Usage: hack/worker.sh up|down|env|check
#   up     needs the control plane (hack/cluster.sh up); starts everything and waits until the node
#          is Ready and cluster DNS answers. Writes $RBN_STATE/worker/worker.env.
#   down   removes the node's pods through the apiserver (so that the CNI tears their networks
#          down), stops the daemons, then removes whatever they left on the machine: iptables
#          chains (v4 and v6), interfaces, network namespaces, mounts, kubepods cgroups (depth
#          first), directories kubelet and containerd create outside the state dir, and restores
#          the sysctls kubelet and kube-proxy change. Then runs `check`: fails if anything is left.
#   env    prints the worker's settings (worker.env) as shell assignments.
#   check  compares the machine with the snapshot `up` took before starting (iptables-save and
#          ip6tables-save lines of the stack's chains, interfaces, network namespaces, mounts,
#          cgroups, sysctls, processes); prints what differs and fails if anything does.
#
# kube-proxy's rules are machine-wide and every stack shares the service CIDR, so only one stack
# per machine runs the worker: `up` refuses while another stack's worker runs
# ($RBN_CACHE/worker.owner). RBN_WORKER=0 makes hack/dev-up.sh skip the worker.
# Environment: RBN_WORKER_KUBELET_PORT (default: a free port), RBN_WORKER_POD_CIDR (10.42.0.0/24).
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C # sort and comm agree on the order

W="${RBN_STATE}/worker"
PORT_TAG="${RBN_APISERVER_PORT:-16443}"
NODE_NAME="rbn-worker"
NODE_IP="10.254.$((PORT_TAG % 250)).2"
NODE_IF="rbnw${PORT_TAG}"
BRIDGE="${RBN_WORKER_BRIDGE}"
POD_CIDR="${RBN_WORKER_POD_CIDR:-10.42.0.0/24}"
# The control plane's service CIDR is 10.0.0.0/24 (hack/cluster.sh); its .1 is the apiserver.
DNS_IP="10.0.0.10"
PAUSE_IMAGE="rbn.local/pause:1"
BUSYBOX_IMAGE="rbn.local/busybox:1"
SSHD_IMAGE="rbn.local/sshd:1"
COREDNS_IMAGE="rbn.local/coredns:${COREDNS_VERSION}"
# hack/manifests/metrics-server runs it (hack/dev-up.sh applies it).
METRICS_SERVER_IMAGE="rbn.local/metrics-server:${METRICS_SERVER_VERSION}"
SOCK="${W}/containerd/containerd.sock"
OWNER="${RBN_CACHE}/worker.owner"
BEFORE="${W}/before"
# What kubelet (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, kernel.keys.*), kube-proxy
# (conntrack, route_localnet) and the CNI bridge (forwarding) may change.
SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Fixed paths kubelet and containerd write outside their configured directories (removed by down
# when up found them absent), and shared ones (removed only when empty: podman and the isolated
# hosts use network namespaces too).
MACHINE_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /opt/containerd)
SHARED_PATHS=(/run/netns /var/lib/cni)

kubectl() { "${K8S_BIN}/kubectl" --kubeconfig="${KUBECONFIG}" "$@"; }
ctr() { command ctr --address "${SOCK}" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------
# Snapshots of the machine: what the stack's worker may change.

snap_iptables() { # snap_iptables iptables|ip6tables: the lines naming the stack's chains or addresses
  "$1-save" 2>/dev/null | sed -E 's/\[[0-9]+:[0-9]+\]//' | grep -E "KUBE-|CNI-|${BRIDGE}|${POD_CIDR%.*}\." | sort || true
}
snap_chains() { # snap_chains iptables|ip6tables: table/chain for every KUBE-/CNI- chain
  "$1-save" 2>/dev/null | awk '/^\*/{t=substr($0,2)} /^:(KUBE-|CNI-)/{print t "/" substr($1,2)}' | sort
}
snap_links() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }
snap_netns() { ls /run/netns 2>/dev/null | sort || true; }
snap_mounts() { findmnt -rn -o TARGET | sort; }
snap_cgroups() { ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods 2>/dev/null | sort || true; }
snap_sysctls() { local k; for k in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$k" "$(sysctl -n "$k" 2>/dev/null || echo absent)"; done; }
# Sorted, as comm needs.
snap_paths() { local p; for p in "${MACHINE_PATHS[@]}"; do [[ -e "$p" ]] && echo "$p"; done | sort || true; }
snap_shared_paths() { local p; for p in "${SHARED_PATHS[@]}"; do [[ -e "$p" ]] && echo "$p"; done | sort || true; }

snapshot() { # snapshot DIR
  mkdir -p "$1"
  snap_iptables iptables >"$1/iptables"
  snap_iptables ip6tables >"$1/ip6tables"
  snap_chains iptables >"$1/chains4"
  snap_chains ip6tables >"$1/chains6"
  snap_links >"$1/links"
  snap_netns >"$1/netns"
  snap_mounts >"$1/mounts"
  snap_cgroups >"$1/cgroups"
  snap_sysctls >"$1/sysctls"
  snap_paths >"$1/paths"
  snap_shared_paths >"$1/shared-paths"
}

# ---------------------------------------------------------------------------------------------
# check: the machine as it was before `up`, as far as the worker is concerned.

# ours LINE...: the lines (interfaces, mounts, netns) that belong to this stack's worker.
ours_filter() { grep -E "^(${NODE_IF}p?|${BRIDGE}|veth[0-9a-f]{8})$|^${W}|^/var/lib/kubelet|^/run/containerd|^/run/netns/cni-|^cni-" || true; }

cmd_check() {
  [[ -d "${BEFORE}" ]] || rbn::die "no snapshot in ${BEFORE}: the worker was not brought up"
  local now bad=0 f diff
  now="$(mktemp -d)"
  snapshot "${now}"
  # Processes: anything still using the worker's state (daemons, shims, containers' cwd).
  local left
  left="$(worker_pids)"
  [[ -n "${left}" ]] && { rbn::log "check: processes of the worker still running: ${left}"; bad=1; }
  for f in iptables ip6tables cgroups sysctls paths; do
    diff="$(diff "${BEFORE}/${f}" "${now}/${f}" || true)"
    if [[ "${f}" == sysctls && -n "${diff}" ]]; then
      local k
      for k in $(sed -n 's/^> \([^=]*\)=.*/\1/p' <<<"${diff}"); do
        forwarding_shared "${k}" && diff="$(grep -v "^[<>] ${k}=" <<<"${diff}" | grep '^[<>]' || true)"
      done
    fi
    [[ -z "${diff}" ]] && continue
    rbn::log "check: ${f} differ from before up:"; printf '%s\n' "${diff}" >&2; bad=1
  done
  # Interfaces, namespaces and mounts come and go with other stacks on this machine: compare the
  # ones the worker creates.
  for f in links netns mounts; do
    diff="$(comm -13 <(ours_filter <"${BEFORE}/${f}") <(ours_filter <"${now}/${f}"))"
    [[ -z "${diff}" ]] && continue
    rbn::log "check: ${f} left behind:"; printf '%s\n' "${diff}" >&2; bad=1
  done
  rm -rf "${now}"
  ((bad == 0)) || return 1
  rbn::log "check: the machine is as before the worker came up"
}

# ---------------------------------------------------------------------------------------------
# up

# worker_pids: pids of every process of this worker (daemons, containerd's shims, containers):
# those whose command line names the state dir, and those in the kubepods cgroups.
worker_pids() {
  local p cmd pids=()
  for p in /proc/[0-9]*; do
    [[ "${p#/proc/}" == "$$" || "${p#/proc/}" == "${BASHPID}" ]] && continue
    { cmd="$(tr '\0' ' ' <"${p}/cmdline")"; } 2>/dev/null || continue
    [[ "${cmd}" == *"${W}/"* ]] && pids+=("${p#/proc/}")
  done
  if [[ -d /sys/fs/cgroup/pids/kubepods ]] && ! grep -qx /sys/fs/cgroup/pids/kubepods "${BEFORE}/cgroups" 2>/dev/null; then
    mapfile -t -O "${#pids[@]}" pids < <(find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null)
  fi
  ((${#pids[@]})) || return 0
  printf '%s\n' "${pids[@]}" | sort -un | paste -sd' '
}

claim_machine() {
  mkdir -p "${RBN_CACHE}"
  exec 8>"${OWNER}.lock"
  flock 8
  if [[ -f "${OWNER}" ]]; then
    local other; other="$(cat "${OWNER}")"
    if [[ "${other}" != "${RBN_STATE}" ]] && RBN_STATE="${other}" rbn::running containerd-worker; then
      rbn::die "the stack in ${other} runs this machine's worker node (one per machine: kube-proxy's rules are machine-wide); stop it or set RBN_WORKER=0"
    fi
  fi
  echo "${RBN_STATE}" >"${OWNER}"
  exec 8>&- # not inherited by the daemons
}

make_pki() {
  local pki="${W}/pki"
  mkdir -p "${pki}"
  local client="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
  rbn::sign_cert "${pki}" kubelet-client "/O=system:nodes/CN=system:node:${NODE_NAME}" "${client}" "${RBN_CA_CERT}" "${RBN_CA_KEY}"
  rbn::sign_cert "${pki}" kubelet-serving "/O=system:nodes/CN=system:node:${NODE_NAME}" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:${NODE_IP},DNS:${NODE_NAME}" "${RBN_CA_CERT}" "${RBN_CA_KEY}"
  rbn::sign_cert "${pki}" kube-proxy "/CN=system:kube-proxy" "${client}" "${RBN_CA_CERT}" "${RBN_CA_KEY}"
  rbn::sign_cert "${pki}" coredns "/CN=system:coredns" "${client}" "${RBN_CA_CERT}" "${RBN_CA_KEY}"
  local name
  for name in kubelet-client kube-proxy coredns; do
    cat >"${W}/${name}.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: rbn
  cluster: {server: "${RBN_APISERVER_URL}", certificate-authority-data: $(base64 -w0 "${RBN_CA_CERT}")}
users:
- name: ${name}
  user: {client-certificate-data: $(base64 -w0 "${pki}/${name}.crt"), client-key-data: $(base64 -w0 "${pki}/${name}.key")}
contexts:
- name: ${name}
  context: {cluster: rbn, user: ${name}}
current-context: ${name}
EOF
    chmod 600 "${W}/${name}.kubeconfig"
  done
}

write_configs() {
  mkdir -p "${W}/containerd" "${W}/cni/net.d" "${W}/cni/ipam" "${W}/kubelet" "${W}/logs" "${W}/pod-logs"
  cat >"${W}/containerd/config.toml" <<EOF
version = 2
root = "${W}/containerd/root"
state = "${W}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "${SOCK}"
[ttrpc]
  address = "${SOCK}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${W}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # This VM lacks CAP_SYS_RESOURCE: a negative oom_score_adj for sandboxes fails every runc create.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${W}/cni/net.d"
    max_conf_num = 1
EOF
  # The stack's registry (hack/registry.sh) speaks plain HTTP: containerd pulls rbn's images from it
  # (in the in-cluster mode it listens where pods reach it; containerd itself runs on this machine).
  local env="${RBN_STATE}/registry/registry.env" registry
  if [[ -f "${env}" ]]; then
    registry="$(sed -n 's/^REGISTRY=//p' "${env}")"
    cat >>"${W}/containerd/config.toml" <<EOF
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."${registry}"]
    endpoint = ["http://${registry}"]
EOF
  fi
  # A private CNI configuration (podman's is in /etc/cni/net.d); host-local keeps its leases in the
  # state dir. The pod CIDR avoids podman's 10.88/16 and 10.89+ pools, the hosts' networks, the
  # service CIDR and 100.64/10.
  cat >"${W}/cni/net.d/10-rbn-worker.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "rbn-worker",
  "plugins": [{
    "type": "bridge", "bridge": "${BRIDGE}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": "${W}/cni/ipam", "ranges": [[{"subnet": "${POD_CIDR}"}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
EOF
  cat >"${W}/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "${RBN_CA_CERT}"}
authorization: {mode: Webhook}
tlsCertFile: ${W}/pki/kubelet-serving.crt
tlsPrivateKeyFile: ${W}/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://${SOCK}
# cgroup v1 (hybrid) and no systemd here.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
clusterDNS: [${DNS_IP}]
clusterDomain: cluster.local
podLogsDir: ${W}/pod-logs
serializeImagePulls: false
# A shared development machine: its disk and memory are not this node's to guard.
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  cat >"${W}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "${W}/kube-proxy.kubeconfig"}
hostnameOverride: ${NODE_NAME}
mode: iptables
clusterCIDR: ${POD_CIDR}
bindAddress: ${NODE_IP}
healthzBindAddress: "127.0.0.1:${PROXY_HEALTHZ_PORT}"
metricsBindAddress: "127.0.0.1:${PROXY_METRICS_PORT}"
# NodePorts on the node's own address only (not every address of this shared machine, not
# 127.0.0.1, which would need route_localnet).
nodePortAddresses: ["${NODE_IP}/32"]
iptables:
  localhostNodePorts: false
  # A pod reaching a Service backed by a pod on the same bridge gets its reply through the host.
  masqueradeAll: true
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# image_import NAME CONFIG ROOTFS_TAR: builds an OCI archive and imports it into containerd's k8s.io
# namespace (no registry is reachable from here).
image_import() {
  local name="$1" config="$2" rootfs="$3" dir="${W}/images/${1//[\/:]/_}"
  rbn::oci_layout "${dir}" "${name}" "${config}" "${rootfs}"
  tar -C "${dir}" -cf "${dir}.tar" .
  ctr images import "${dir}.tar" >/dev/null || rbn::die "ctr images import ${name} failed"
  rm -rf "${dir}" "${dir}.tar"
}

import_images() {
  mkdir -p "${W}/images"
  local bb="${W}/images/busybox.tar"
  rbn::busybox_rootfs_tar "${bb}"
  # containerd kills sandboxes with SIGKILL: sleep is enough for a pause process.
  image_import "${PAUSE_IMAGE}" '{"Entrypoint":["/bin/sleep"],"Cmd":["2147483647"]}' "${bb}"
  image_import "${BUSYBOX_IMAGE}" '{"Cmd":["sh"]}' "${bb}"
  # The users' side of image customization (ssh, scp), and a server for them as on build hosts.
  rbn::sshd_rootfs_tar "${W}/images/sshd.tar"
  image_import "${SSHD_IMAGE}" '{"Cmd":["/usr/local/bin/rbn-sshd"]}' "${W}/images/sshd.tar"
  local root="${W}/images/coredns-root"
  mkdir -p "${root}/etc/coredns"
  cp "${RBN_CACHE}/coredns-${COREDNS_VERSION}/coredns" "${root}/coredns"
  printf 'root:x:0:0:root:/:/coredns\n' >"${root}/etc/passwd"
  tar -C "${root}" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "${W}/images/coredns.tar" .
  image_import "${COREDNS_IMAGE}" '{"Entrypoint":["/coredns"],"Cmd":["-conf","/etc/coredns/Corefile"]}' "${W}/images/coredns.tar"
  # metrics-server: the static binary and an empty /tmp (its --cert-dir, an emptyDir there).
  local ms="${W}/images/metrics-server-root"
  mkdir -p "${ms}/tmp"
  cp "${RBN_CACHE}/metrics-server-${METRICS_SERVER_VERSION}/metrics-server" "${ms}/metrics-server"
  tar -C "${ms}" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "${W}/images/metrics-server.tar" .
  image_import "${METRICS_SERVER_IMAGE}" '{"Entrypoint":["/metrics-server"],"User":"1000"}' "${W}/images/metrics-server.tar"
  rm -rf "${root}" "${ms}" "${W}/images"
}

# CoreDNS runs with the node's network: pods cannot reach the apiserver, which listens on
# 127.0.0.1 only (and its `kubernetes` Service has no endpoints). It listens on the node address
# only, so it does not take port 53 from anything else on the machine, and the DNS Service at
# ${DNS_IP} forwards to it there.
apply_dns() {
  kubectl create secret generic coredns-kubeconfig --namespace=kube-system \
    --from-file=kubeconfig="${W}/coredns.kubeconfig" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        bind ${NODE_IP}
        errors
        health ${NODE_IP}:8080
        ready ${NODE_IP}:8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            kubeconfig /etc/coredns-kubeconfig/kubeconfig
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 5
        }
        forward . /etc/resolv.conf
        cache 5
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      nodeSelector: {kubernetes.io/hostname: ${NODE_NAME}}
      hostNetwork: true
      dnsPolicy: Default
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
      - name: coredns
        image: ${COREDNS_IMAGE}
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
        - {name: kubeconfig, mountPath: /etc/coredns-kubeconfig, readOnly: true}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10, failureThreshold: 5}
      volumes:
      - {name: config, configMap: {name: coredns}}
      - {name: kubeconfig, secret: {secretName: coredns-kubeconfig}}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: ${DNS_IP}
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
EOF
}

dns_answers() { # the kubernetes Service's name resolves through the DNS Service's ClusterIP
  busybox nslookup kubernetes.default.svc.cluster.local "${DNS_IP}" 2>/dev/null | grep -qE '^Address:? +10\.0\.0\.1$'
}

cmd_up() {
  local c
  for c in kubelet kube-proxy kubectl; do
    [[ -x "${K8S_BIN}/${c}" ]] || rbn::die "${K8S_BIN}/${c} missing: run hack/build-k8s.sh"
  done
  for c in containerd ctr runc /usr/lib/cni/bridge /usr/lib/cni/host-local conntrack; do
    command -v "${c}" >/dev/null || rbn::die "${c} missing: run hack/install-deps.sh"
  done
  eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  "${RBN_ROOT}/hack/build-coredns.sh"
  "${RBN_ROOT}/hack/build-metrics-server.sh"
  if rbn::running containerd-worker; then
    rbn::log "a worker is running in ${W}: taking it down first"
    cmd_down
  fi
  claim_machine
  local start=${SECONDS}
  rm -rf "${W}"
  mkdir -p "${W}"
  snapshot "${BEFORE}"
  # If anything below fails or is interrupted, leave nothing behind.
  WORKER_UP=false
  trap 'if ! ${WORKER_UP}; then rbn::log "worker: bring-up failed, taking it down"; cmd_down || true; fi' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  KUBELET_PORT="${RBN_WORKER_KUBELET_PORT:-}"
  if [[ -z "${KUBELET_PORT}" ]] || rbn::port_in_use "${KUBELET_PORT}"; then KUBELET_PORT="$(rbn::free_port)"; fi
  PROXY_HEALTHZ_PORT="$(rbn::free_port "${KUBELET_PORT}")"
  PROXY_METRICS_PORT="$(rbn::free_port "${KUBELET_PORT}" "${PROXY_HEALTHZ_PORT}")"

  # The node's address, on a veth (no dummy links in this kernel): the apiserver does not proxy to
  # loopback.
  ip link show "${NODE_IF}" >/dev/null 2>&1 || ip link add "${NODE_IF}" type veth peer name "${NODE_IF}p"
  ip addr replace "${NODE_IP}/32" dev "${NODE_IF}"
  ip link set "${NODE_IF}p" up
  ip link set "${NODE_IF}" up

  make_pki
  write_configs
  cat >"${W}/worker.env" <<EOF
NODE_NAME=${NODE_NAME}
NODE_IP=${NODE_IP}
POD_CIDR=${POD_CIDR}
DNS_IP=${DNS_IP}
BUSYBOX_IMAGE=${BUSYBOX_IMAGE}
SSHD_IMAGE=${SSHD_IMAGE}
KUBELET_PORT=${KUBELET_PORT}
CONTAINERD_SOCKET=${SOCK}
EOF

  rbn::log "starting containerd (log: ${W}/logs/containerd.log)"
  rbn::start containerd-worker "${W}/logs/containerd.log" containerd --config "${W}/containerd/config.toml"
  rbn::wait_for_daemon containerd-worker "containerd on ${SOCK}" 30 ctr version ||
    { tail -n 20 "${W}/logs/containerd.log" >&2; false; }
  import_images

  rbn::log "starting kubelet ${NODE_NAME} on ${NODE_IP}:${KUBELET_PORT} (log: ${W}/logs/kubelet.log)"
  rbn::start kubelet-worker "${W}/logs/kubelet.log" "${K8S_BIN}/kubelet" \
    --config="${W}/kubelet/config.yaml" \
    --kubeconfig="${W}/kubelet-client.kubeconfig" \
    --root-dir="${W}/kubelet" \
    --cert-dir="${W}/pki" \
    --hostname-override="${NODE_NAME}" \
    --node-ip="${NODE_IP}"
  rbn::log "starting kube-proxy (iptables mode; log: ${W}/logs/kube-proxy.log)"
  rbn::start kube-proxy-worker "${W}/logs/kube-proxy.log" "${K8S_BIN}/kube-proxy" --config="${W}/kube-proxy.yaml"
  rbn::wait_for_daemon kubelet-worker "node ${NODE_NAME} registered" 60 kubectl get node "${NODE_NAME}" ||
    { tail -n 30 "${W}/logs/kubelet.log" >&2; false; }
  rbn::wait_for_daemon kubelet-worker "node ${NODE_NAME} Ready" 60 \
    kubectl wait --for=condition=Ready "node/${NODE_NAME}" --timeout=2s ||
    { tail -n 30 "${W}/logs/kubelet.log" >&2; false; }
  rbn::wait_for_daemon kube-proxy-worker "kube-proxy healthy" 30 \
    curl -fsS --max-time 2 "http://127.0.0.1:${PROXY_HEALTHZ_PORT}/healthz" ||
    { tail -n 30 "${W}/logs/kube-proxy.log" >&2; false; }

  rbn::log "starting CoreDNS ${COREDNS_VERSION} (Service kube-system/kube-dns at ${DNS_IP})"
  apply_dns
  rbn::wait_for_daemon kubelet-worker "CoreDNS answering at ${DNS_IP}" 90 dns_answers ||
    { kubectl -n kube-system get pods -o wide >&2; kubectl -n kube-system logs deploy/coredns --tail=20 >&2 || true; false; }
  WORKER_UP=true
  rbn::log "worker node ${NODE_NAME} up in $((SECONDS - start))s"
}

# ---------------------------------------------------------------------------------------------
# down

# purge_iptables iptables|ip6tables: removes the KUBE-/CNI- chains that were not there before up
# and the rules that jump to them.
purge_iptables() {
  local cmd="$1" before="${BEFORE}/chains${2}" script
  script="$("${cmd}-save" 2>/dev/null | awk -v before="${before}" '
    BEGIN { while ((getline l < before) > 0) keep[l] = 1 }
    /^\*/ { t = substr($0, 2); tables[++nt] = t; next }
    /^:(KUBE-|CNI-)/ { c = substr($1, 2); if (!((t "/" c) in keep)) { doomed[t "/" c] = 1; chains[t] = chains[t] " " c } next }
    /^-A / { rules[t] = rules[t] "\n" $0 }
    END {
      for (i = 1; i <= nt; i++) {
        t = tables[i]; if (chains[t] == "") continue
        print "*" t
        n = split(rules[t], rs, "\n")
        for (j = 1; j <= n; j++) {
          if (rs[j] == "") continue
          nf = split(rs[j], f, " ")
          if ((t "/" f[2]) in doomed) continue
          for (k = 3; k < nf; k++) if ((f[k] == "-j" || f[k] == "-g") && ((t "/" f[k+1]) in doomed)) { sub(/^-A /, "-D ", rs[j]); print rs[j]; break }
        }
        m = split(chains[t], cs, " ")
        for (j = 1; j <= m; j++) if (cs[j] != "") print "-F " cs[j]
        for (j = 1; j <= m; j++) if (cs[j] != "") print "-X " cs[j]
        print "COMMIT"
      }
    }')"
  [[ -z "${script}" ]] && return 0
  "${cmd}-restore" --noflush <<<"${script}" || rbn::log "warning: ${cmd}-restore could not remove every chain"
}

remove_pods() { # through the apiserver, so that kubelet stops them and the CNI removes their networks
  [[ -n "${KUBECONFIG:-}" ]] || return 0
  rbn::running kubelet-worker || return 0
  kubectl get node "${NODE_NAME}" >/dev/null 2>&1 || return 0
  kubectl cordon "${NODE_NAME}" >/dev/null 2>&1 || true
  kubectl delete deployment coredns --namespace=kube-system --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete pods --all-namespaces --field-selector "spec.nodeName=${NODE_NAME}" --grace-period=1 --timeout=60s >/dev/null 2>&1 ||
    rbn::log "warning: not every pod of ${NODE_NAME} was removed in 60s; killing what is left"
  kubectl delete node "${NODE_NAME}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

cmd_down() {
  [[ -d "${W}" ]] || return 0
  if [[ -f "${RBN_STATE}/cluster/ports.env" ]]; then
    eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  else
    unset KUBECONFIG
  fi
  remove_pods
  rbn::stop kube-proxy-worker
  # kube-proxy's own chains (v4 and v6); kubelet's and the CNI's are purged below.
  "${K8S_BIN}/kube-proxy" --cleanup >>"${W}/logs/kube-proxy-cleanup.log" 2>&1 || true
  # rbn-portal's policy rules and route (and its veth), if its pod was killed before it removed them.
  if [[ -x "${RBN_ROOT}/bin/rbn-kubelet" ]]; then
    "${RBN_ROOT}/bin/rbn-kubelet" portal --cleanup >>"${W}/logs/rbn-portal-cleanup.log" 2>&1 || true
  fi
  rbn::stop kubelet-worker
  if rbn::running containerd-worker; then
    local id
    for id in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "${id}" >/dev/null 2>&1 || true; done
    for id in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "${id}" >/dev/null 2>&1 || true; done
    for id in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "${id}" >/dev/null 2>&1 || true; done
  fi
  rbn::stop containerd-worker
  local pids
  pids="$(worker_pids)"
  if [[ -n "${pids}" ]]; then
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL ${pids} 2>/dev/null || true
    rbn::wait_for "the worker's processes to exit" 10 bash -c "for p in ${pids}; do [[ -e /proc/\$p ]] && exit 1; done; exit 0" || true
  fi
  # Mounts: the kubelet root (bind-mounted onto itself), volumes, sandboxes' shm, overlay rootfs,
  # network namespaces: deepest first.
  local m
  while read -r m; do
    umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || rbn::log "warning: cannot unmount ${m}"
  done < <(findmnt -rn -o TARGET | grep -E "^${W}/|^/var/lib/kubelet/|^/run/netns/cni-|^/run/containerd/" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
  local ns
  for ns in $(comm -13 "${BEFORE}/netns" <(snap_netns) | grep '^cni-' || true); do ip netns delete "${ns}" 2>/dev/null || rm -f "/run/netns/${ns}"; done
  local cg
  for cg in $(comm -13 "${BEFORE}/cgroups" <(snap_cgroups)); do
    find "${cg}" -depth -type d -exec rmdir {} + 2>/dev/null || rbn::log "warning: cannot remove cgroup ${cg}"
  done
  purge_iptables iptables 4
  purge_iptables ip6tables 6
  ip link del "${BRIDGE}" 2>/dev/null || true
  ip link del "${NODE_IF}" 2>/dev/null || true
  restore_sysctls
  local p
  for p in $(comm -13 "${BEFORE}/paths" <(snap_paths)); do rm -rf "${p}"; done
  for p in $(comm -13 "${BEFORE}/shared-paths" <(snap_shared_paths)); do rmdir "${p}" 2>/dev/null || true; done
  local rc=0
  cmd_check || rc=1
  if [[ -f "${OWNER}" && "$(cat "${OWNER}")" == "${RBN_STATE}" ]]; then rm -f "${OWNER}"; fi
  rm -rf "${W}"
  rbn::log "worker node ${NODE_NAME} removed"
  return "${rc}"
}

# forwarding_shared SYSCTL: SYSCTL turns forwarding on and another bridge network (podman's) is on
# this machine now: it needs forwarding too, so the worker leaves it as it is.
forwarding_shared() {
  [[ "$1" == *forwarding || "$1" == net.ipv4.ip_forward ]] || return 1
  ip -o link show type bridge | awk -F': ' '{print $2}' | grep -vqx "${BRIDGE}"
}

restore_sysctls() {
  local line k v now
  while IFS='=' read -r k v; do
    [[ "${v}" == absent ]] && continue
    now="$(sysctl -n "${k}" 2>/dev/null)" || continue
    [[ "${now}" == "${v}" ]] && continue
    # Podman's bridges need forwarding too: leave it on while another bridge network exists.
    if forwarding_shared "${k}"; then
      rbn::log "leaving ${k}=${now} (was ${v}): other bridge networks on this machine use it"
      continue
    fi
    sysctl -qw "${k}=${v}" || rbn::log "warning: cannot restore ${k}=${v}"
  done <"${BEFORE}/sysctls"
}

cmd_env() {
  [[ -f "${W}/worker.env" ]] || rbn::die "no worker in ${W}: run hack/worker.sh up"
  cat "${W}/worker.env"
}

case "${1:-}" in
  up) cmd_up ;;
  down) if [[ -d "${W}" ]]; then cmd_down; fi ;;
  env) cmd_env ;;
  check) cmd_check ;;
  *) sed -n '2,/^# shellcheck/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac
