#!/usr/bin/env bash
# Local build hosts for development and tests: each host is an sshd on its own loopback address
# (127.0.1.<i>) plus its own podman API service with its own storage, network and locks, as a real
# remote build host would have (root login by key, podman socket reached over SSH).
#
# Usage: hack/hosts.sh up [N]          start hosts 1..N (default 2); idempotent
#        hack/hosts.sh down            stop every host, remove its containers, mounts and state
#        hack/hosts.sh list            print the host dirs, one per line
#        hack/hosts.sh stop-sshd I | start-sshd I | stop-podman I | start-podman I
#        hack/hosts.sh reboot I       simulate host I's reboot (hosts::reboot): its containers die
#                                      unrecorded, podman resets their state, a new boot id
#        hack/hosts.sh podman I ARGS.. run podman against host I's storage (same config as its service)
#        hack/hosts.sh ssh I [CMD..]   ssh into host I as root with the strict known_hosts file
#
# Per host, "$RBN_STATE/hosts/host<i>/host.env" holds NAME, ADDRESS, PORT, USER, PODMAN_SOCKET,
# KNOWN_HOSTS, PRIVATE_KEY, STORAGE, NETNS, ARCH. Each host but the emulated ones has a boot id of
# its own (host_boot_id, bound over /proc/sys/kernel/random/boot_id in its sshd's mount namespace).
# The client key "$RBN_STATE/hosts/id_ed25519" is authorized on
# every host. Every host has the image localhost/rbn/busybox, tagged latest and 1.0 (CMD sh):
# pods that name :1.0 default to imagePullPolicy IfNotPresent, as hosts reach no registry. Every
# host also has localhost/rbn/sshd:1.0, an image-customization-shaped sshd built from Debian's
# OpenSSH server of its architecture (this machine's packages, or the emulated host's root file
# system; hack/lib.sh rbn::sshd_rootfs_tar): root by key from /root/.ssh/authorized_keys, sftp.
#
# Isolated hosts (RBN_ISOLATED_HOSTS="4 5", host indexes): sshd and the podman service (so every
# container too) run in a network namespace of their own, "rbn-<port>-host<i>", joined to this
# machine by a veth pair with a private /30 in 100.64.0.0/10 (derived from the SSH port and the
# index: stacks on other ports never collide) and no default route. sshd listens on the
# namespace's side of the /30 (ADDRESS in host.env); the host reaches nothing but that /30, so not
# the registry or object store on this machine's 127.0.0.1, as a build host fenced off from the
# cluster's services would. host.env has NETNS=<name> for them; `down` deletes namespace and veth.
#
# Emulated aarch64 hosts (RBN_ARM64_HOSTS="3", host indexes; combinable with isolation): an arm64
# Debian root filesystem (hack/arm64-rootfs.sh, cached; its first build takes about 8 minutes)
# unpacked under the host dir and run under qemu-user in a private mount namespace with that root
# (hack/hosts-arm64-ns.sh): its own sshd and `podman system service` run there, emulated, so
# `hosts.sh ssh I uname -m` prints aarch64 and podman reports arch arm64. What qemu-user cannot do
# runs natively: this machine's x86 runc and conmon (copied in with their libraries) and iptables
# (wrappers chrooting into the read-only bind of this machine's / at /.machine). Their containers
# run with seccomp "unconfined" (the arm64 profile blocks a call of the x86 qemu interpreter) on a
# default network of their own name (netavark names its NAT chains after it). The host dir is bound
# at its own path inside, so host.env's paths hold on both sides. Slow: a container starts in
# 10-20 s (`podman run` through the API), a podman CLI call takes 5-25 s.
# `up` registers qemu-aarch64 in binfmt_misc (flag F); `down` restores binfmt_misc as it was
# (hack/lib.sh rbn::binfmt_acquire). Their busybox image is the arm64 one (the root filesystem's
# busybox-static). host.env has ARCH=arm64 for them, ARCH=amd64 (this machine's) for the others.
#
# In the in-cluster mode (hack/lib.sh), the other hosts' sshd listens on 10.254.<n>.<10+i> on the
# stack's link instead of 127.0.1.<i>, where rbn-kubelet's pod reaches it (host.env ADDRESS).
#
# Environment: RBN_HOST_SSH_PORT (default 2222), RBN_HOST_STORAGE_DRIVER (default overlay; vfs
# where overlay does not work), RBN_HOST_NET_PREFIX (first two octets of the hosts' container
# subnets, default derived from the port), RBN_HOST_REGISTRIES_CONF (registries.conf for the hosts;
# default $RBN_STATE/registry/registries.conf when hack/registry.sh wrote one),
# RBN_ISOLATED_HOSTS and RBN_ARM64_HOSTS (see above; read by `up` for the hosts it creates).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOSTS_DIR="${RBN_STATE}/hosts"
HOSTS_MAX=15
IMAGE_REF="localhost/rbn/busybox:latest"
IMAGE_TAGS=("localhost/rbn/busybox:1.0")
SSHD_IMAGE_REF="localhost/rbn/sshd:1.0"
SSH_PORT="${RBN_HOST_SSH_PORT:-2222}"
STORAGE_DRIVER="${RBN_HOST_STORAGE_DRIVER:-overlay}"
# Container subnets: host i's default network is <prefix>.<16*i>.0/22 (1021 pod addresses: every
# pod holds one, and the scale benchmark puts 250 pods on a host) and networks created on it come
# from <prefix>.<16*i+8>.0/21, so hosts (and host sets of other checkouts on other ports) do not
# share bridges or addresses.
NET_PREFIX="${RBN_HOST_NET_PREFIX:-10.$((128 + SSH_PORT % 128))}"
PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH}"

hosts::dir() { echo "${HOSTS_DIR}/host$1"; }

# hosts::netns I: the network namespace of isolated host I (recorded when it was created), or
# nothing for a host in this machine's namespace.
hosts::netns() { cat "$(hosts::dir "$1")/netns" 2>/dev/null || true; }

# hosts::isolated_addr I SIDE: address SIDE (1 = this machine's end, 2 = the namespace's) of host
# I's /30: block (port * 16 + I - 1) of 100.64.0.0/10, which holds 2^20 blocks: 65536 ports x 16.
hosts::isolated_addr() {
  local port; port="$(hosts::port "$1")"
  local off=$(((port * 16 + $1 - 1) * 4 + $2))
  echo "100.$((64 + (off >> 16))).$(((off >> 8) & 255)).$((off & 255))"
}

# hosts::addr I: the address host I's sshd listens on: its isolated /30, the address recorded for
# it on the stack's link (in-cluster mode: pods reach no loopback address), or 127.0.1.<i>.
hosts::addr() {
  local d; d="$(hosts::dir "$1")"
  if [[ -n "$(hosts::netns "$1")" ]]; then hosts::isolated_addr "$1" 2
  elif [[ -f "$d/address" ]]; then cut -d' ' -f1 "$d/address"
  else echo "127.0.1.$1"; fi
}

# hosts::link_addr_up I / hosts::link_addr_down I: add (remove) host I's address on the stack's
# link, for a host with an address file ("ADDRESS LINK").
hosts::link_addr_up() {
  local f; f="$(hosts::dir "$1")/address"
  [[ -f "$f" ]] || return 0
  local addr link; read -r addr link <"$f"
  ip link show "${link}" >/dev/null 2>&1 || rbn::stack_link_up >/dev/null
  ip addr replace "${addr}/32" dev "${link}"
}
hosts::link_addr_down() {
  local f; f="$(hosts::dir "$1")/address"
  [[ -f "$f" ]] || return 0
  local addr link; read -r addr link <"$f"
  ip addr del "${addr}/32" dev "${link}" 2>/dev/null || true
}

# hosts::in_netns I CMD...: runs CMD in host I's network namespace (if it has one). Not `ip netns
# exec`: it also mounts a new /sys in a new mount namespace, hiding the cgroup mounts podman needs.
hosts::in_netns() {
  local ns; ns="$(hosts::netns "$1")"; shift
  if [[ -n "$ns" ]]; then nsenter --net="/run/netns/$ns" -- "$@"; else "$@"; fi
}

# hosts::veth I: this machine's end of isolated host I's veth pair (the peer has suffix "n").
hosts::veth() { echo "rbn$(hosts::port "$1")i$1"; }

# hosts::netns_up I: creates isolated host I's namespace and link; idempotent.
hosts::netns_up() {
  local i="$1" ns veth; ns="$(hosts::netns "$1")"; veth="$(hosts::veth "$1")"
  [[ -e "/run/netns/${ns}" ]] || ip netns add "${ns}"
  ip link show "${veth}" >/dev/null 2>&1 || ip link add "${veth}" type veth peer name "${veth}n" netns "${ns}"
  ip addr replace "$(hosts::isolated_addr "$i" 1)/30" dev "${veth}"
  ip link set "${veth}" up
  ip -n "${ns}" addr replace "$(hosts::isolated_addr "$i" 2)/30" dev "${veth}n"
  ip -n "${ns}" link set "${veth}n" up
  ip -n "${ns}" link set lo up
}

# hosts::netns_down I: deletes isolated host I's link and namespace (after its daemons stopped).
hosts::netns_down() {
  local ns veth; ns="$(hosts::netns "$1")"; veth="$(hosts::veth "$1")"
  [[ -n "$ns" ]] || return 0
  ip link show "${veth}" >/dev/null 2>&1 && ip link delete "${veth}" 2>/dev/null || true
  ip netns delete "${ns}" 2>/dev/null || true
}

hosts::isolation_requested() { local l="${RBN_ISOLATED_HOSTS:-}"; [[ " ${l//,/ } " == *" $1 "* ]]; }
hosts::arm64_requested() { local l="${RBN_ARM64_HOSTS:-}"; [[ " ${l//,/ } " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Emulated arm64 hosts.

# hosts::arm64 I: host I is an emulated arm64 host (recorded when it was created).
hosts::arm64() { [[ -f "$(hosts::dir "$1")/arm64" ]]; }
hosts::arch() { if hosts::arm64 "$1"; then echo arm64; else dpkg --print-architecture; fi; }
# The binfmt_misc user this stack's arm64 hosts count as (hack/lib.sh rbn::binfmt_acquire).
HOSTS_BINFMT_USER="hosts:${HOSTS_DIR}"
# Where the x86 runc and conmon live inside the root filesystem (their libraries go to the x86
# library paths, which the arm64 ones do not use).
HOSTS_X86_DIR=/usr/local/lib/rbn-x86

# hosts::ns_pid I: the process holding arm64 host I's mount namespace, if it runs.
hosts::ns_pid() { hosts::owned "host$1-ns" "$1" && cat "${RBN_STATE}/pids/host$1-ns.pid"; }

# hosts::copy_x86 ROOT BIN...: copies this machine's BINs into ROOT$HOSTS_X86_DIR and their shared
# libraries (the x86 loader included) to the same paths under ROOT.
hosts::copy_x86() {
  local root="$1" b path lib; shift
  mkdir -p "${root}${HOSTS_X86_DIR}"
  for b in "$@"; do
    path="$(command -v "$b")"
    cp -L "${path}" "${root}${HOSTS_X86_DIR}/${b}"
    for lib in $(ldd "${path}" | grep -o '/[^ ]*'); do
      mkdir -p "${root}$(dirname "${lib}")"
      cp -L "${lib}" "${root}${lib}"
    done
  done
}

# hosts::arm64_rootfs I: unpacks the root filesystem of arm64 host I (building it first if it is
# not cached) and readies it: the native helpers, iptables wrappers, DNS, mount points.
hosts::arm64_rootfs() {
  local i="$1" d root tarball t; d="$(hosts::dir "$1")"; root="$(hosts::dir "$1")/root"
  tarball="$("${RBN_ROOT}/hack/arm64-rootfs.sh")"
  mkdir -p "${root}"
  # (Not its device nodes: the machine's /dev is bound there.)
  tar -C "${root}" --numeric-owner --exclude='./dev/*' -xzf "${tarball}"
  hosts::copy_x86 "${root}" runc conmon
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    rm -f "${root}/usr/sbin/$t"
    printf '#!/bin/sh\n# qemu-user cannot emulate netfilter sockets: the x86 %s of the machine.\nexec /usr/sbin/chroot /.machine %s "$@"\n' \
      "$t" "$(command -v "$t")" >"${root}/usr/sbin/$t"
    chmod 755 "${root}/usr/sbin/$t"
  done
  cp -L /etc/resolv.conf "${root}/etc/resolv.conf"
  echo "rbn-host-${i}" >"${root}/etc/hostname"
  mkdir -p "${root}/.machine" "${root}/.oldroot" "${root}${d}"
}

# hosts::ns_start I: the holder of arm64 host I's mount namespace (hack/hosts-arm64-ns.sh).
hosts::ns_start() {
  local i="$1" d; d="$(hosts::dir "$1")"
  hosts::owned "host${i}-ns" "$i" && return 0
  local in_netns=() ns; ns="$(hosts::netns "$i")"
  [[ -z "$ns" ]] || in_netns=(nsenter --net="/run/netns/$ns" --)
  rm -f "$d/ns-ready"
  rbn::start "host${i}-ns" "$d/ns.log" "${in_netns[@]}" unshare --mount --propagation private -- \
    /bin/sh "${RBN_ROOT}/hack/hosts-arm64-ns.sh" "$d/" 9>&-
  rbn::wait_for_daemon "host${i}-ns" "host ${i} root filesystem mounted" 60 test -f "$d/ns-ready" ||
    { tail -5 "$d/ns.log" >&2 || true; return 1; }
}

# hosts::ns_pids MNT: the processes in mount namespace MNT ("mnt:[inode]"), zombies aside.
hosts::ns_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/ns/mnt" 2>/dev/null)" == "$1" ]] && rbn::alive "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}

# hosts::ns_stop I: kills every process in arm64 host I's namespace, its holder included (the
# namespace and its mounts go with the last one).
hosts::ns_stop() {
  local i="$1" pid mnt pids deadline=$((SECONDS + 10))
  pid="$(hosts::ns_pid "$i")" || return 0
  mnt="$(readlink "/proc/${pid}/ns/mnt")" || return 0
  pids="$(hosts::ns_pids "${mnt}")"
  # shellcheck disable=SC2086
  [[ -z "${pids}" ]] || kill -KILL ${pids} 2>/dev/null || true
  while [[ -n "$(hosts::ns_pids "${mnt}")" ]] && ((SECONDS < deadline)); do sleep 0.1; done
  [[ -z "$(hosts::ns_pids "${mnt}")" ]] || rbn::log "host ${i}: processes left in its namespace: $(hosts::ns_pids "${mnt}" | tr '\n' ' ')"
  rm -f "${RBN_STATE}/pids/host${i}-ns.pid"
}

hosts::check_index() {
  [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= HOSTS_MAX)) || rbn::die "host index must be 1..${HOSTS_MAX}, got '$1'"
}

# hosts::indexes: the indexes of the hosts that have a dir, ascending.
hosts::indexes() {
  local d
  for d in "${HOSTS_DIR}"/host*; do
    [[ -d "$d" && "${d##*/host}" =~ ^[0-9]+$ ]] && echo "${d##*/host}"
  done | sort -n
}

# hosts::podman I ARGS...: podman against host I's storage with the host's own configuration
# (lock type, network dir, tmp dir, runtime); plain `podman --root X` would use the machine's
# defaults and corrupt the host's state.
hosts::podman() {
  local d; d="$(hosts::dir "$1")"; shift
  "$d/podman" "$@"
}

# ---------------------------------------------------------------------------------------------
# Writing a host's files.

hosts::write_podman_config() {
  local i="$1" d; d="$(hosts::dir "$1")"
  local bridge="rbn${SSH_PORT}h${i}" net_id net=podman
  mkdir -p "$d/networks" "$d/tmp" "$d/storage" "$d/run"
  net_id="$(printf 'rbn-host-%s-%s' "${SSH_PORT}" "${i}" | sha256sum | cut -c1-64)"
  # netavark names its NAT chains after the network: hosts whose networks share a name share
  # chains, and one's teardown was seen to drop another's MASQUERADE rule.
  if hosts::arm64 "$i"; then net="rbn-${SSH_PORT}-h${i}"; fi

  cat >"$d/containers.conf" <<EOF
# rbn test build host ${i}. Everything that podman would otherwise share between instances on one
# machine (tmp dir, locks, events, network configs and IPAM) is per host.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_backend = "netavark"
network_config_dir = "$d/networks"
default_network = "${net}"
default_subnet = "${NET_PREFIX}.$((16 * i)).0/22"
default_subnet_pools = [{"base" = "${NET_PREFIX}.$((16 * i + 8)).0/21", "size" = 24}]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$d/tmp"
volume_path = "$d/storage/volumes"
lock_type = "file"
exit_command_delay = 5
service_timeout = 0
EOF
  if hosts::arm64 "$i"; then
    # qemu-user cannot run runc or conmon (their clone flags): this machine's run natively. The
    # arm64 seccomp profile would block the x86 qemu interpreter (setting the %fs base for TLS).
    cat >>"$d/containers.conf" <<EOF
conmon_path = ["${HOSTS_X86_DIR}/conmon"]

[engine.runtimes]
runc = ["${HOSTS_X86_DIR}/runc"]
EOF
    sed -i 's/^\[containers\]$/&\nseccomp_profile = "unconfined"/' "$d/containers.conf"
  fi

  cat >"$d/storage.conf" <<EOF
[storage]
driver = "${STORAGE_DRIVER}"
graphroot = "$d/storage"
runroot = "$d/run"
EOF

  # The default network "podman" would be the bridge podman0 with 10.88.0.0/16 in every instance:
  # hosts would hand out the same addresses on one shared bridge and tear it down under each other.
  # A file named after the default network overrides the built-in one.
  cat >"$d/networks/${net}.json" <<EOF
{
  "name": "${net}",
  "id": "${net_id}",
  "driver": "bridge",
  "network_interface": "${bridge}",
  "created": "2020-01-01T00:00:00Z",
  "subnets": [{"subnet": "${NET_PREFIX}.$((16 * i)).0/22", "gateway": "${NET_PREFIX}.$((16 * i)).1"}],
  "ipv6_enabled": false,
  "internal": false,
  "dns_enabled": false,
  "ipam_options": {"driver": "host-local"}
}
EOF

  # The wrapper every podman invocation for this host goes through (service included).
  local reg="" conf="${RBN_HOST_REGISTRIES_CONF:-${RBN_STATE}/registry/registries.conf}" netns=""
  [[ -f "${conf}" ]] && reg="CONTAINERS_REGISTRIES_CONF=$(realpath "${conf}")"
  [[ -n "$(hosts::netns "$i")" ]] && netns="$(command -v nsenter) --net=/run/netns/$(hosts::netns "$i") --"
  if hosts::arm64 "$i"; then
    # Into the host's namespace (found by its holder's pid at each call), where registries.conf
    # has to be under the host dir to be seen.
    if [[ -f "${conf}" ]]; then cp "${conf}" "$d/registries.conf" && reg="CONTAINERS_REGISTRIES_CONF=$d/registries.conf"; fi
    netns="$(command -v nsenter) -t \$(cat '${RBN_STATE}/pids/host${i}-ns.pid') -m -n -r -w --"
  fi
  cat >"$d/podman" <<EOF
#!/bin/sh
exec ${netns} env -i PATH="${PATH}" HOME="${HOME}" TMPDIR="$d/tmp" ${reg} \\
  CONTAINERS_CONF="$d/containers.conf" CONTAINERS_STORAGE_CONF="$d/storage.conf" \\
  podman --root "$d/storage" --runroot "$d/run" --storage-driver "${STORAGE_DRIVER}" "\$@"
EOF
  chmod +x "$d/podman"
}

hosts::write_ssh_config() {
  local i="$1" d addr; d="$(hosts::dir "$1")"; addr="$(hosts::addr "$1")"
  mkdir -p "$d/ssh"
  [[ -f "$d/ssh/ssh_host_ed25519_key" ]] ||
    ssh-keygen -q -t ed25519 -N '' -C "rbn-host-${i}" -f "$d/ssh/ssh_host_ed25519_key"
  cp "${HOSTS_DIR}/id_ed25519.pub" "$d/ssh/authorized_keys"
  chmod 600 "$d/ssh/authorized_keys"

  cat >"$d/ssh/sshd_config" <<EOF
# rbn test build host ${i}
ListenAddress ${addr}:${SSH_PORT}
HostKey $d/ssh/ssh_host_ed25519_key
PidFile $d/ssh/sshd.pid
AuthorizedKeysFile $d/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
X11Forwarding no
PermitTTY yes
ClientAliveInterval 15
ClientAliveCountMax 4
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 64
MaxStartups 100:30:200
LogLevel VERBOSE
Subsystem sftp internal-sftp
# The hosts share this machine's root account, whose ~/.bashrc may be heavy
# (pyenv init here: a second of CPU and a lock per shell). bash reads it for
# every command sshd runs unless SHLVL shows a parent shell: rbn's commands
# (tail, mv, cat /proc/meminfo, ...) would each pay for it, and a burst of
# them on 2 cores starves podman (measured: podman info took 9-11 s, load
# average 37). A real build host's rc files are its operator's business.
SetEnv SHLVL=1
EOF
  mkdir -p /run/sshd && chmod 755 /run/sshd # privilege separation dir
  /usr/sbin/sshd -t -f "$d/ssh/sshd_config" || rbn::die "host ${i}: invalid sshd config"

  local hostkey; hostkey="$(cut -d' ' -f1,2 "$d/ssh/ssh_host_ed25519_key.pub")"
  if [[ "${SSH_PORT}" == 22 ]]; then
    echo "${addr} ${hostkey}" >"$d/known_hosts"
  else
    echo "[${addr}]:${SSH_PORT} ${hostkey}" >"$d/known_hosts"
  fi
}

hosts::write_env() {
  local i="$1" d addr; d="$(hosts::dir "$1")"
  addr="$(hosts::addr "$i")" # before the redirection truncates host.env, which hosts::port reads
  cat >"$d/host.env" <<EOF
NAME=rbn-host-${i}
ADDRESS=${addr}
PORT=${SSH_PORT}
USER=root
PODMAN_SOCKET=$d/podman.sock
KNOWN_HOSTS=$d/known_hosts
PRIVATE_KEY=${HOSTS_DIR}/id_ed25519
STORAGE=$d/storage
NETNS=$(hosts::netns "$i")
ARCH=$(hosts::arch "$i")
EOF
}

# hosts::build_image: the busybox rootfs tarball, once per `up`.
hosts::build_image() {
  mkdir -p "${HOSTS_DIR}/image"
  rbn::busybox_rootfs_tar "${HOSTS_DIR}/image/busybox.tar"
  rbn::sshd_rootfs_tar "${HOSTS_DIR}/image/sshd.tar"
}

# ---------------------------------------------------------------------------------------------
# Daemons.

hosts::tcp_accepts() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

hosts::ssh() {
  local i="$1" d; d="$(hosts::dir "$1")"; shift
  ssh -F /dev/null -i "${HOSTS_DIR}/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$d/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
    -p "$(hosts::port "$i")" "root@$(hosts::addr "$i")" "$@"
}

# The port host I was set up with (host.env), so stop/start work whatever the caller's environment.
hosts::port() {
  local f; f="$(hosts::dir "$1")/host.env"
  if [[ -f "$f" ]]; then sed -n 's/^PORT=//p' "$f"; else echo "${SSH_PORT}"; fi
}

hosts::sshd_start() {
  local i="$1" d; d="$(hosts::dir "$1")"
  hosts::owned "host${i}-sshd" "$i" && return 0
  mkdir -p /run/sshd && chmod 755 /run/sshd
  local in_netns=() ns; ns="$(hosts::netns "$i")"
  [[ -z "$ns" ]] || in_netns=(nsenter --net="/run/netns/$ns" --)
  # The arm64 host's own (emulated) sshd, in its namespace.
  if hosts::arm64 "$i"; then
    in_netns=(nsenter -t "$(hosts::ns_pid "$i")" -m -n -r -w --)
  else
    # The host's own boot id (hosts::reboot gives it a new one), in a mount namespace of sshd's:
    # what rbn-kubelet reads over SSH, as on a real host.
    [[ -s "$d/host_boot_id" ]] || cat /proc/sys/kernel/random/uuid >"$d/host_boot_id"
    # --propagation unchanged: this machine's mounts are private, so the boot id stays sshd's;
    # the volume root and podman's volume store are shared mounts (hosts::volumes_share), so the
    # volumes rbn-kubelet mounts over SSH are seen by the host's podman, which runs outside this
    # namespace, and podman's tmpfs volumes by sshd, as on a real host.
    hosts::volumes_share "$i"
    in_netns=(unshare --mount --propagation unchanged -- /bin/sh -c 'mount --bind "$1" /proc/sys/kernel/random/boot_id && shift && exec "$@"'
      sh "$d/host_boot_id" "${in_netns[@]}")
  fi
  rbn::start "host${i}-sshd" "$d/sshd.out" "${in_netns[@]}" /usr/sbin/sshd -D -f "$d/ssh/sshd_config" -E "$d/sshd.log" 9>&-
}

# hosts::volumes_share I: host I's volume root ($d/volumes, its RemoteBuildNode's spec.volumes.root)
# and its podman's volume store ($d/storage/volumes) as shared bind mounts of themselves, so that
# mounts propagate between sshd's mount namespace and this machine's, where the host's podman
# runs: the volumes rbn-kubelet mounts over SSH, and the tmpfs of a Memory emptyDir that podman
# mounts, which rbn-kubelet empties over SSH once its pod has ended.
hosts::volumes_share() {
  local d m; d="$(hosts::dir "$1")"
  for m in "$d/volumes" "$d/storage/volumes"; do
    mkdir -p "$m"
    mountpoint -q "$m" || mount --rbind "$m" "$m"
    mount --make-shared "$m"
  done
}

hosts::sshd_wait() {
  local i="$1" addr port t=20; addr="$(hosts::addr "$1")"; port="$(hosts::port "$1")"
  if hosts::arm64 "$i"; then t=90; fi # emulated
  rbn::wait_for "host ${i} sshd on ${addr}:${port}" "$t" hosts::tcp_accepts "${addr}" "${port}" ||
    { tail -5 "$(hosts::dir "$i")/sshd.log" >&2 || true; return 1; }
  rbn::wait_for "ssh root@${addr}:${port} true" "$t" hosts::ssh "$i" true ||
    { hosts::ssh "$i" true || true; return 1; }
}

# The sshd listener does not take its connections' processes down with it: a test that cuts a
# host's SSH needs the established sessions (and their forwarded channels) gone too.
hosts::descendants() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null || true); do
    echo "$c"
    hosts::descendants "$c"
  done
}

# hosts::owned NAME I: true if the pid recorded for NAME is still host I's daemon (its command
# line names the host dir). A pid file from before a reboot is dropped rather than acted on: the
# pid may belong to anything now.
hosts::owned() {
  local p="${RBN_STATE}/pids/$1.pid"
  [[ -f "$p" ]] || return 1
  if tr '\0' ' ' <"/proc/$(cat "$p")/cmdline" 2>/dev/null | grep -qF -- "${HOSTS_DIR}/host$2/"; then
    return 0
  fi
  rm -f "$p"
  return 1
}

# hosts::terminate NAME I: SIGTERM host I's daemon NAME and wait until it has exited, then
# rbn::stop (SIGKILL) if it has not. Here PID 1 reaps orphans only every second or so and
# rbn::stop counts a zombie as alive; an exited daemon has an empty /proc/PID/cmdline at once.
hosts::terminate() {
  local name="$1" i="$2" pid deadline=$((SECONDS + 10))
  hosts::owned "$name" "$i" || return 0
  pid="$(cat "${RBN_STATE}/pids/${name}.pid")"
  kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
  while hosts::owned "$name" "$i" && ((SECONDS < deadline)); do sleep 0.05; done
  if hosts::owned "$name" "$i"; then rbn::stop "$name"; fi
  rm -f "${RBN_STATE}/pids/${name}.pid"
}

hosts::sshd_stop() {
  local i="$1" pidfile="${RBN_STATE}/pids/host$1-sshd.pid" pid="" kids=""
  if hosts::owned "host${i}-sshd" "$i"; then
    pid="$(cat "${pidfile}")"
    kids="$(hosts::descendants "${pid}")"
    kill -TERM "${pid}" 2>/dev/null || true # no new connections from here on
  fi
  # Sessions whose listener is already gone are found by their sockets.
  local s
  for s in $(hosts::in_netns "$i" ss -Htnp state established "( sport = :$(hosts::port "$i") )" src "$(hosts::addr "$i")" 2>/dev/null |
    grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    kids+=" $s $(hosts::descendants "$s")"
  done
  # shellcheck disable=SC2086
  [[ -z "${kids// /}" ]] || kill -KILL ${kids} 2>/dev/null || true
  # Bookkeeping and escalation. (It returns only once init has reaped the exited sshd: ~1-2 s here.)
  hosts::terminate "host${i}-sshd" "$i"
  rm -f "$(hosts::dir "$i")/ssh/sshd.pid"
}

hosts::podman_start() {
  local i="$1" d; d="$(hosts::dir "$1")"
  hosts::owned "host${i}-podman" "$i" && return 0
  rm -f "$d/podman.sock"
  rbn::start "host${i}-podman" "$d/podman.log" "$d/podman" --log-level=info system service --time=0 "unix://$d/podman.sock" 9>&-
}

hosts::ping() { [[ "$(curl -fsS --max-time 2 --unix-socket "$1" http://d/_ping 2>/dev/null)" == OK ]]; }

hosts::podman_wait() {
  local i="$1" d t=30; d="$(hosts::dir "$1")"
  if hosts::arm64 "$i"; then t=180; fi # emulated
  rbn::wait_for "host ${i} podman API at $d/podman.sock" "$t" hosts::ping "$d/podman.sock" ||
    { tail -5 "$d/podman.log" >&2 || true; return 1; }
}

hosts::podman_stop() {
  hosts::terminate "host$1-podman" "$1"
  rm -f "$(hosts::dir "$1")/podman.sock"
}

# ---------------------------------------------------------------------------------------------
# Cleaning.

# hosts::unmount_under DIR: unmounts everything mounted at or below DIR, deepest first.
hosts::unmount_under() {
  local m
  findmnt -rn -o TARGET | awk -v p="$1" 'index($0, p "/") == 1 || $0 == p' | sort -r |
    while read -r m; do
      m="$(printf '%b' "$m")" # findmnt escapes blanks as \x20
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || rbn::log "could not unmount $m"
    done
}

# hosts::kill_containers I: kills host I's conmon processes (recognised by this host's paths on
# their command line, as pid files may be stale), then the container processes they monitored:
# conmon first, so that no exit is recorded, as when the machine goes down.
hosts::kill_containers() {
  local d u conmon pid conmons=() pids=(); d="$(hosts::dir "$1")"
  for u in "$d"/run/*-containers/*/userdata; do
    [[ -f "$u/conmon.pid" ]] || continue
    conmon="$(cat "$u/conmon.pid" 2>/dev/null || true)"
    [[ "$conmon" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$conmon/cmdline" 2>/dev/null | grep -qF -- "$d/" || continue
    conmons+=("$conmon")
    pid="$(cat "$u/pidfile" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ && "$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$conmon" ]]; then
      pids+=("$pid")
    fi
  done
  ((${#conmons[@]} == 0)) || kill -KILL "${conmons[@]}" 2>/dev/null || true
  ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
}

# hosts::remove_netns I: removes the network namespaces of host I's containers (bind mounts under
# /run/netns, named in the containers' config; podman removes them with the containers, this is the
# fallback), and with them the containers' ends of their veth pairs.
hosts::remove_netns() {
  local d ns; d="$(hosts::dir "$1")"
  for ns in $(grep -ho '/run/netns/netns-[0-9a-f-]*' "$d"/storage/overlay-containers/*/userdata/config.json \
    "$d"/storage/vfs-containers/*/userdata/config.json 2>/dev/null | sort -u); do
    [[ -e "$ns" ]] && { umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true; rm -f "$ns"; }
  done
}

# hosts::reboot I: what a reboot does to host I, as podman and rbn-kubelet see it (this machine's
# kernel stays up): sshd and the podman service stop, with every session; every container process
# dies without podman recording its end; what a reboot clears goes (the run dir and podman's tmp
# dir, with its "alive" marker, so that the service resets its containers' state at its next start,
# as after a real boot; the container store's mounts; the containers' network namespaces); the
# host gets a new boot id; sshd and podman start again. The events log stays (hosts::clean reads
# it). Not on the emulated arm64 hosts.
hosts::reboot() {
  local i="$1" d; d="$(hosts::dir "$1")"
  ! hosts::arm64 "$i" || rbn::die "host ${i}: reboots are not simulated on emulated arm64 hosts"
  hosts::sshd_stop "$i"
  hosts::podman_stop "$i"
  hosts::kill_containers "$i"
  hosts::remove_netns "$i"
  hosts::unmount_under "$d/storage"
  hosts::unmount_under "$d/run"
  # The volumes' file systems (rbn-kubelet mounts them again); the root's shared bind is made again
  # by hosts::sshd_start.
  hosts::unmount_under "$d/volumes"
  find "$d/run" "$d/tmp" -mindepth 1 -maxdepth 1 ! -name events -exec rm -rf --one-file-system {} +
  # runc keeps its containers' state in this machine's /run/runc, which a boot clears.
  local c
  for c in "$d"/storage/*-containers/*/; do
    c="$(basename "$c")"
    [[ "$c" =~ ^[0-9a-f]{64}$ ]] && rm -rf "/run/runc/$c"
  done
  cat /proc/sys/kernel/random/uuid >"$d/host_boot_id"
  hosts::podman_start "$i"
  hosts::podman_wait "$i"
  hosts::sshd_start "$i"
  hosts::sshd_wait "$i"
}

# hosts::clean I: with the host's daemons stopped, removes its pods and containers (their
# processes, network namespaces, bridge and firewall rules go with them), then anything podman
# failed to clean, then the host dir.
hosts::clean() {
  local i="$1" d; d="$(hosts::dir "$1")"
  [[ -d "$d" ]] || return 0
  local pods="" bridges
  # The bridges of the host's networks (its default one, and the pod networks rbn-kubelet made):
  # netavark removes a bridge with its last container, but not after a crash.
  bridges="$(jq -r '.network_interface // empty' "$d"/networks/*.json 2>/dev/null || true)"
  if [[ -x "$d/podman" && -d "$d/storage" ]]; then
    pods="$(timeout 30 "$d/podman" pod ps -q --no-trunc 2>/dev/null || true)"
    timeout 60 "$d/podman" pod rm -af -t 0 >/dev/null 2>&1 || true
    timeout 60 "$d/podman" rm -af -t 0 >/dev/null 2>&1 || true
    timeout 60 "$d/podman" volume rm -af >/dev/null 2>&1 || true
  fi
  # Whatever podman could not remove.
  hosts::kill_containers "$i"
  hosts::remove_netns "$i"
  # With cgroupfs on hybrid cgroups, podman leaves a removed pod's (empty) cgroup in the
  # name=systemd and unified hierarchies: every pod this host ever had is in its events log.
  pods+=" $(jq -r 'select(.Type == "pod") | .ID' "$d/tmp/events/events.log" 2>/dev/null | sort -u || true)"
  local pod cg
  for pod in ${pods}; do
    [[ "$pod" =~ ^[0-9a-f]{64}$ ]] || continue
    for cg in /sys/fs/cgroup/libpod_parent/"${pod}" /sys/fs/cgroup/*/libpod_parent/"${pod}"; do
      [[ -d "$cg" ]] && { find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; }
    done
  done
  hosts::ns_stop "$i"
  local bridge
  for bridge in "rbn$(hosts::port "$i")h${i}" ${bridges}; do
    [[ "$bridge" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || continue
    ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge" 2>/dev/null || true
  done
  hosts::netns_down "$i"
  hosts::link_addr_down "$i"
  hosts::unmount_under "$d"
  rm -rf --one-file-system "$d"
}

# ---------------------------------------------------------------------------------------------
# Commands.

# hosts::lock: serialises up and down. Daemons must not inherit fd 9 (they would hold the lock
# forever): every start closes it.
hosts::boot_id() { cat /proc/sys/kernel/random/boot_id; }

hosts::lock() {
  mkdir -p "${RBN_STATE}"
  exec 9>"${RBN_STATE}/.hosts.lock"
  flock -w 120 9 || rbn::die "another hosts.sh up/down is running"
}

# hosts::podman_bounded I ARGS...: host I's podman CLI, each try bounded to 2 minutes, 3 tries (timeout
# signals the whole process group: podman's helper processes too). Under qemu-user emulation (the
# arm64 hosts) podman has been seen to hang for good in a futex wait at its first `import` and in the
# infra image's build (no CPU used, nothing logged) while the same command takes seconds otherwise.
hosts::podman_bounded() {
  local i="$1" try; shift
  for try in 1 2 3; do
    # Without the lock's fd 9: a podman that outlives its timeout (under emulation its processes
    # may leave timeout's process group) must not hold the lock.
    timeout --kill-after=10 120 "$(hosts::dir "$i")/podman" "$@" 9>&- && return 0
    rbn::log "host ${i}: podman $1 failed or hung (try ${try} of 3)"
  done
  return 1
}

cmd_up() {
  local n="${1:-2}" i d tool pid start=${SECONDS}
  hosts::check_index "$n"
  hosts::lock
  mkdir -p "${HOSTS_DIR}"
  local sock_probe="${HOSTS_DIR}/host${HOSTS_MAX}/podman.sock"
  ((${#sock_probe} < 100)) || rbn::die "RBN_STATE path too long for unix sockets: ${sock_probe}"
  for tool in podman runc conmon /usr/sbin/sshd ssh ssh-keygen curl findmnt flock; do
    command -v "$tool" >/dev/null || rbn::die "$tool not found (run hack/install-deps.sh)"
  done
  if [[ -n "${RBN_ARM64_HOSTS:-}" ]]; then
    for tool in debootstrap qemu-aarch64-static unshare nsenter pivot_root ldd; do
      command -v "$tool" >/dev/null || rbn::die "$tool not found (run hack/install-deps.sh)"
    done
  fi

  [[ -f "${HOSTS_DIR}/id_ed25519" ]] ||
    ssh-keygen -q -t ed25519 -N '' -C "rbn-hosts-client" -f "${HOSTS_DIR}/id_ed25519"

  local fresh=()
  for ((i = 1; i <= n; i++)); do
    d="$(hosts::dir "$i")"
    if [[ -f "$d/host.env" ]]; then
      if [[ "$(hosts::port "$i")" != "${SSH_PORT}" ]]; then
        rbn::die "host ${i} is up on port $(hosts::port "$i"), not ${SSH_PORT}: run down first"
      fi
      # Up already, or with daemons stopped (on purpose or not): they are started again below and
      # podman finds its containers. Only a reboot makes the state stale (podman's tmp dir is on
      # disk, so podman itself would not notice).
      [[ "$(cat "$d/boot_id" 2>/dev/null)" == "$(hosts::boot_id)" ]] && continue
      rbn::log "host ${i}: state from before a reboot, recreating it"
      hosts::sshd_stop "$i"
      hosts::podman_stop "$i"
      hosts::clean "$i"
    fi
    fresh+=("$i")
  done

  if ((${#fresh[@]})); then
    hosts::build_image
  fi
  for i in "${fresh[@]}"; do
    d="$(hosts::dir "$i")"
    mkdir -p "$d"
    if hosts::isolation_requested "$i"; then echo "rbn-${SSH_PORT}-host${i}" >"$d/netns"
    elif rbn::in_cluster; then echo "${RBN_STACK_NET}.$((10 + i)) ${RBN_STACK_LINK}" >"$d/address"; fi
    if hosts::arm64_requested "$i"; then
      : >"$d/arm64"
      rbn::binfmt_acquire "${HOSTS_BINFMT_USER}"
      hosts::arm64_rootfs "$i"
    fi
    hosts::write_podman_config "$i"
    hosts::write_ssh_config "$i"
    hosts::write_env "$i"
    hosts::boot_id >"$d/boot_id"
  done
  for ((i = 1; i <= n; i++)); do
    [[ -z "$(hosts::netns "$i")" ]] || hosts::netns_up "$i"
    hosts::link_addr_up "$i"
    if hosts::arm64 "$i"; then
      rbn::binfmt_acquire "${HOSTS_BINFMT_USER}" # idempotent; again after a `down` of binfmt by hand
      hosts::ns_start "$i" || rbn::die "host ${i}: its root filesystem could not be mounted (see $(hosts::dir "$i")/ns.log)"
    fi
    hosts::podman_start "$i"
    hosts::sshd_start "$i"
  done
  # The image goes straight into each host's storage, concurrently with the services' start.
  local pids=()
  for i in "${fresh[@]}"; do
    (
      d="$(hosts::dir "$i")" tar="${HOSTS_DIR}/image/busybox.tar" sshd_tar=""
      if hosts::arm64 "$i"; then
        # The arm64 variant, from the root filesystem's busybox-static, where the host sees it.
        tar="$d/busybox.tar"
        RBN_BUSYBOX="$d/root/usr/bin/busybox" rbn::busybox_rootfs_tar "${tar}"
      fi
      hosts::podman_bounded "$i" import --quiet --change 'CMD=["sh"]' "${tar}" "${IMAGE_REF}" >/dev/null
      hosts::podman_bounded "$i" tag "${IMAGE_REF}" "${IMAGE_TAGS[@]}"
      sshd_tar="${HOSTS_DIR}/image/sshd.tar"
      if hosts::arm64 "$i"; then
        sshd_tar="$d/sshd.tar"
        RBN_BUSYBOX="$d/root/usr/bin/busybox" rbn::sshd_rootfs_tar "${sshd_tar}" "$d/root"
      fi
      hosts::podman_bounded "$i" import --quiet --change 'CMD=["/usr/local/bin/rbn-sshd"]' \
        "${sshd_tar}" "${SSHD_IMAGE_REF}" >/dev/null
      [[ "${sshd_tar}" != "$d/sshd.tar" ]] || rm -f "${sshd_tar}"
      # The pods' infra image (localhost/podman-pause), which podman builds at a host's first pod:
      # built here, where a try that hangs is killed and tried again, rather than in a test's first
      # pod. Under emulation that build's helper process once hung for good in a futex wait and
      # held every later pod create on the host until it was killed by hand.
      hosts::podman_bounded "$i" pod create --replace --name rbn-warmup >/dev/null
      hosts::podman_bounded "$i" pod rm --force rbn-warmup >/dev/null
      [[ "${tar}" != "$d/busybox.tar" ]] || rm -f "${tar}"
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rbn::die "importing ${IMAGE_REF} failed"; done
  for ((i = 1; i <= n; i++)); do
    hosts::sshd_wait "$i" || rbn::die "host ${i}: sshd not usable (see $(hosts::dir "$i")/sshd.log)"
    hosts::podman_wait "$i" || rbn::die "host ${i}: podman service not up (see $(hosts::dir "$i")/podman.log)"
  done
  rbn::log "hosts 1..${n} up in $((SECONDS - start))s under ${HOSTS_DIR}"
  cmd_list
}

cmd_down() {
  hosts::lock
  local i pids=()
  for i in $(hosts::indexes); do
    (
      hosts::sshd_stop "$i" &
      hosts::podman_stop "$i" &
      wait
      hosts::clean "$i"
    ) &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  # pid files of hosts whose dirs are already gone
  local p
  for p in "${RBN_STATE}"/pids/host*-sshd.pid "${RBN_STATE}"/pids/host*-podman.pid "${RBN_STATE}"/pids/host*-ns.pid; do
    [[ -f "$p" ]] || continue
    p="${p##*/}"; p="${p%.pid}"; i="${p%-*}"; i="${i#host}"
    hosts::terminate "$p" "$i"
  done
  rm -rf "${HOSTS_DIR}"
  # After the last arm64 host: binfmt_misc as before `up` (a no-op if this stack had none).
  rbn::binfmt_release "${HOSTS_BINFMT_USER}"
  rbn::log "hosts down"
}

cmd_list() {
  local i
  for i in $(hosts::indexes); do hosts::dir "$i"; done
}

hosts::require() {
  hosts::check_index "${1:-}"
  [[ -f "$(hosts::dir "$1")/host.env" ]] || rbn::die "host $1 is not set up (hack/hosts.sh up)"
}

main() {
  local cmd="${1:-}"; shift || true
  case "${cmd}" in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  list) cmd_list ;;
  stop-sshd) hosts::require "${1:-}"; hosts::sshd_stop "$1" ;;
  start-sshd) hosts::require "${1:-}"; hosts::sshd_start "$1"; hosts::sshd_wait "$1" ;;
  stop-podman) hosts::require "${1:-}"; hosts::podman_stop "$1" ;;
  reboot) hosts::require "${1:-}"; hosts::reboot "$1" ;;
  start-podman) hosts::require "${1:-}"; hosts::podman_start "$1"; hosts::podman_wait "$1" ;;
  podman) hosts::require "${1:-}"; local i="$1"; shift; hosts::podman "$i" "$@" ;;
  ssh) hosts::require "${1:-}"; hosts::ssh "$@" ;;
  *)
    sed -n '2,/^source/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
    ;;
  esac
}

main "$@"
