#!/usr/bin/env bash
# Shared helpers for hack/ scripts. Source it; do not run it.
# Conventions:
#   RBN_ROOT   the repository root
#   RBN_CACHE  tool builds reused across clones (default ~/.cache/rbn)
#   RBN_STATE  the running dev stack: pki, kubeconfigs, host dirs, pids, logs (default $RBN_ROOT/_output/dev)
set -euo pipefail

RBN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RBN_CACHE="${RBN_CACHE:-${HOME}/.cache/rbn}"
RBN_STATE="${RBN_STATE:-${RBN_ROOT}/_output/dev}"
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
KSM_VERSION="${KSM_VERSION:-v2.20.0}"
K8S_BIN="${RBN_CACHE}/k8s-${K8S_VERSION}/bin"
export RBN_ROOT RBN_CACHE RBN_STATE K8S_VERSION ETCD_VERSION K8S_BIN COREDNS_VERSION METRICS_SERVER_VERSION KSM_VERSION

# rbn::host_unregistered I: build host I is one the stack starts but does not register as a
# RemoteBuildNode (RBN_UNREGISTERED_HOSTS="5", host indexes; hack/test.sh: its emulated aarch64 host,
# which e2e/arm64_test.go registers itself).
rbn::host_unregistered() { local l="${RBN_UNREGISTERED_HOSTS:-}"; [[ " ${l//,/ } " == *" $1 "* ]]; }

rbn::log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
rbn::die() { rbn::log "ERROR: $*"; exit 1; }

# rbn::build_go_tool NAME MODULE VERSION PACKAGE [LDFLAGS]
# Builds PACKAGE of Go module MODULE at VERSION from source through the module proxy into
# $RBN_CACHE/NAME-VERSION/NAME, statically linked, in a module of our own that requires MODULE:
# MODULE's go.mod, not ours, decides the dependencies (go get resolves them as its own build
# does). Does nothing when the binary exists; concurrent runs build it once.
rbn::build_go_tool() {
  local name="$1" module="$2" version="$3" pkg="$4" ldflags="${5:-}"
  local out_dir="${RBN_CACHE}/${name}-${version}"
  local bin="${out_dir}/${name}" src="${RBN_CACHE}/src/${name}-${version}"
  [[ -x "${bin}" ]] && { rbn::log "${name} ${version} already in ${out_dir}"; return 0; }
  mkdir -p "${out_dir}"
  (
    export GOWORK=off GOFLAGS="-buildvcs=false" CGO_ENABLED=0
    exec 9>"${out_dir}/.build.lock"
    flock 9
    [[ -x "${bin}" ]] && { rbn::log "${name} ${version} built by a concurrent run"; exit 0; }
    start=${SECONDS}
    rbn::log "resolving ${module} ${version} in ${src}"
    rm -rf "${src}" && mkdir -p "${src}" && cd "${src}"
    printf 'package main\n\nimport _ "%s"\n' "${pkg}" >tools.go
    go mod init "rbn.local/build-${name}" >/dev/null 2>&1
    go get "${module}@${version}"
    go mod tidy
    rbn::log "building ${name} ${version}"
    go build -trimpath -ldflags "-s -w ${ldflags}" -o "${bin}.tmp" "${pkg}"
    mv -f "${bin}.tmp" "${bin}"
    rbn::log "built ${name} into ${out_dir} in $((SECONDS - start))s"
  )
}

# rbn::wait_for DESCRIPTION TIMEOUT_SECONDS CMD [ARGS...]
# Runs CMD until it succeeds or the deadline passes; fails naming what was awaited.
rbn::wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      rbn::log "timed out after ${timeout}s waiting for: ${what}"
      return 1
    fi
    sleep 0.2
  done
}

# rbn::start NAME LOGFILE CMD [ARGS...]
# Starts a daemon in its own session, records its pid in $RBN_STATE/pids/NAME.pid.
rbn::start() {
  local name="$1" logfile="$2"; shift 2
  mkdir -p "${RBN_STATE}/pids" "$(dirname "${logfile}")"
  setsid "$@" >>"${logfile}" 2>&1 </dev/null &
  echo $! >"${RBN_STATE}/pids/${name}.pid"
}

# rbn::stop NAME: SIGTERM the recorded pid (and its process group), then SIGKILL after 10 s.
# rbn::alive PID: the process exists and is not a zombie (PID 1 here may reap orphans late).
rbn::alive() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != "Z" ]]
}

rbn::stop() {
  local name="$1" pidfile="${RBN_STATE}/pids/$1.pid" pid
  [[ -f "${pidfile}" ]] || return 0
  pid="$(cat "${pidfile}")"
  if rbn::alive "${pid}"; then
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while rbn::alive "${pid}" && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${pidfile}"
}

rbn::running() { local p="${RBN_STATE}/pids/$1.pid"; [[ -f "$p" ]] && rbn::alive "$(cat "$p")"; }

# rbn::port_in_use PORT: true if a TCP socket on this machine listens on PORT (a port whose
# connections linger in TIME-WAIT can be listened on again).
rbn::port_in_use() { [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]; }

# rbn::free_port [EXCLUDED_PORT...]: prints a TCP port that nothing listens on now (racy by
# nature: bind it soon) and that is neither among the excluded ones nor in $RBN_RESERVED_PORTS
# (ports chosen for daemons that start later, such as rbn-extender's, chosen before the control
# plane's).
rbn::free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ " $* ${RBN_RESERVED_PORTS:-} " == *" ${p} "* ]] && continue
    rbn::port_in_use "${p}" || { echo "${p}"; return 0; }
  done
  rbn::die "no free TCP port found"
}

# rbn::wait_for_daemon NAME DESCRIPTION TIMEOUT_SECONDS CMD [ARGS...]
# rbn::wait_for, but gives up at once when the daemon NAME (started by rbn::start) has exited.
rbn::wait_for_daemon() {
  local name="$1" what="$2" timeout="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! rbn::running "${name}"; then
      rbn::log "${name} exited while waiting for: ${what}"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      rbn::log "timed out after ${timeout}s waiting for: ${what}"
      return 1
    fi
    sleep 0.2
  done
}

# rbn::busybox_rootfs_tar OUT [FILE CONTENT]: writes a root filesystem tarball with the static
# busybox, its applets, passwd and group (the test image), plus FILE (a path below the root) holding
# CONTENT if given. Owned by root, numeric ids. RBN_BUSYBOX names another static busybox (another
# architecture's: its applets are listed by this machine's busybox when it cannot run here).
rbn::busybox_rootfs_tar() {
  local out="$1" extra="${2:-}" content="${3:-}" bb dir a applets
  bb="$(command -v busybox || true)"
  [[ -x /bin/busybox ]] && bb=/bin/busybox
  [[ -n "$bb" ]] || rbn::die "busybox not found (run hack/install-deps.sh)"
  applets="$("$bb" --list)"
  if [[ -n "${RBN_BUSYBOX:-}" ]]; then
    bb="${RBN_BUSYBOX}"
    [[ -f "$bb" ]] || rbn::die "$bb not found"
    applets="$("$bb" --list 2>/dev/null || echo "${applets}")"
  fi
  # A dynamically linked busybox would not run in the image. (no `file` on minimal machines)
  ! LC_ALL=C readelf -l "$bb" 2>/dev/null | grep -q 'Requesting program interpreter' ||
    rbn::die "$bb is not statically linked (install busybox-static)"
  dir="$(mktemp -d "${out}.rootfs.XXXXXX")"
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root"
  cp "$bb" "$dir/bin/busybox"
  for a in ${applets}; do
    [[ -e "$dir/bin/$a" ]] || ln -s busybox "$dir/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
  chmod 1777 "$dir/tmp"
  chmod 700 "$dir/root"
  if [[ -n "$extra" ]]; then mkdir -p "$dir/$(dirname "$extra")" && printf '%s\n' "$content" >"$dir/$extra"; fi
  tar -C "$dir" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$out" .
  rm -rf "$dir"
}

# rbn::elf_closure ROOT FILE...: each FILE (an absolute path inside the root file system ROOT, "/"
# for this machine's), its program interpreter and every shared library it needs, recursively,
# as paths inside ROOT, one a line. readelf reads any architecture's ELF files: an arm64 root works.
rbn::elf_closure() {
  local root="${1%/}" f lib dir interp multiarch
  shift
  local -A seen=()
  local queue=("$@")
  # The library directories of the files' architecture only: an emulated host's root file system
  # also holds this machine's x86 libraries (for its native runc and conmon).
  case "$(LC_ALL=C readelf -h "${root}$1" 2>/dev/null | sed -n 's/^ *Machine: *//p')" in
    AArch64) multiarch=aarch64-linux-gnu ;;
    *X86-64*) multiarch=x86_64-linux-gnu ;;
    *) rbn::die "${root}$1: not an x86-64 or AArch64 ELF file" ;;
  esac
  while ((${#queue[@]})); do
    f="${queue[0]}" queue=("${queue[@]:1}")
    [[ -z "${seen[$f]:-}" ]] || continue
    seen[$f]=1
    [[ -e "${root}${f}" ]] || rbn::die "${root}${f} not found"
    echo "$f"
    interp="$(LC_ALL=C readelf -l "${root}${f}" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')"
    [[ -z "${interp}" ]] || queue+=("${interp}")
    for lib in $(LC_ALL=C readelf -d "${root}${f}" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
      for dir in "/lib/${multiarch}" "/usr/lib/${multiarch}" /lib /usr/lib; do
        if [[ -e "${root}${dir}/${lib}" ]]; then queue+=("${dir}/${lib}") && break; fi
      done
    done
  done
}

# rbn::sshd_rootfs_tar OUT [ROOT]: the rootfs tarball of the test image localhost/rbn/sshd, an
# image-customization-shaped sshd: Debian's OpenSSH server (sshd, ssh-keygen, sftp-server for scp;
# ssh and scp too, so that the worker node's pods can be the users' clients)
# with the shared libraries it needs, from ROOT (default /, this machine's packages; an emulated
# host's root file system for its architecture), on the busybox rootfs (RBN_BUSYBOX, as
# rbn::busybox_rootfs_tar) for the shell. Its entrypoint makes host keys and runs sshd in the
# foreground: root logs in with a key from /root/.ssh/authorized_keys (a Secret), no passwords.
rbn::sshd_rootfs_tar() {
  local out="$1" root="${2:-/}" dir f
  local bins=(/usr/sbin/sshd /usr/bin/ssh-keygen /usr/lib/openssh/sftp-server /usr/bin/ssh /usr/bin/scp)
  for f in "${bins[@]}"; do
    [[ -e "${root%/}${f}" ]] || rbn::die "${root%/}${f} not found (install openssh-server, openssh-sftp-server and openssh-client)"
  done
  rbn::busybox_rootfs_tar "${out}.busybox"
  dir="$(mktemp -d "${out}.rootfs.XXXXXX")"
  tar -C "${dir}" -xf "${out}.busybox" && rm -f "${out}.busybox"
  while read -r f; do
    mkdir -p "${dir}$(dirname "${f}")"
    cp -L "${root%/}${f}" "${dir}${f}"
  done < <(rbn::elf_closure "${root}" "${bins[@]}")
  mkdir -p "${dir}/etc/ssh" "${dir}/run/sshd" "${dir}/root/.ssh" "${dir}/usr/local/bin"
  chmod 700 "${dir}/root/.ssh"
  printf 'sshd:x:100:65534::/run/sshd:/bin/false\n' >>"${dir}/etc/passwd"
  printf 'root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n' >"${dir}/etc/shadow"
  chmod 600 "${dir}/etc/shadow"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"${dir}/etc/nsswitch.conf"
  printf '%s\n' '# rbn test image: root by key only, as an image-customization job'"'"'s sshd.' \
    'PermitRootLogin prohibit-password' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' \
    'UsePAM no' \
    '# authorized_keys comes from a Secret volume, whose files are links into a timestamped dir.' \
    'StrictModes no' 'Subsystem sftp /usr/lib/openssh/sftp-server' 'PidFile /run/sshd.pid' \
    >"${dir}/etc/ssh/sshd_config"
  printf '%s\n' '#!/bin/sh' '# Host keys of the container'"'"'s own, then sshd in the foreground, logging to stderr.' \
    'set -e' 'ssh-keygen -A >/dev/null' 'mkdir -p /run/sshd' 'exec /usr/sbin/sshd -D -e "$@"' \
    >"${dir}/usr/local/bin/rbn-sshd"
  chmod 755 "${dir}/usr/local/bin/rbn-sshd"
  tar -C "${dir}" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "${out}" .
  rm -rf "${dir}"
}

# rbn::oci_layout DIR REF CONFIG LAYER_TAR...: an OCI image layout holding one image (gzip layers)
# named REF (a tag for skopeo's oci:DIR:REF, or a full name such as rbn.local/pause:1 for
# `ctr images import`), CONFIG being the image config's "config" object ({"Cmd":["sh"]}).
rbn::oci_layout() {
  local out="$1" tag="$2" config="$3"; shift 3
  local blobs="${out}/blobs/sha256" layers="" diffs="" f gz dig size
  mkdir -p "${blobs}"
  for f in "$@"; do
    gz="${out}/layer.tar.gz"
    gzip -n -c "$f" >"${gz}"
    dig="$(sha256sum "${gz}" | cut -d' ' -f1)"
    size="$(stat -c %s "${gz}")"
    mv "${gz}" "${blobs}/${dig}"
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:${dig}\",\"size\":${size}}"
    diffs+="${diffs:+,}\"sha256:$(sha256sum "$f" | cut -d' ' -f1)\""
  done
  local arch; arch="$(dpkg --print-architecture)"
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "${arch}" "${config}" "${diffs}" >"${out}/config.json"
  local cdig csize; cdig="$(sha256sum "${out}/config.json" | cut -d' ' -f1)"; csize="$(stat -c %s "${out}/config.json")"
  mv "${out}/config.json" "${blobs}/${cdig}"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "${cdig}" "${csize}" "${layers}" >"${out}/manifest.json"
  local mdig msize; mdig="$(sha256sum "${out}/manifest.json" | cut -d' ' -f1)"; msize="$(stat -c %s "${out}/manifest.json")"
  mv "${out}/manifest.json" "${blobs}/${mdig}"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s","io.containerd.image.name":"%s"}}]}' \
    "${mdig}" "${msize}" "${tag}" "${tag}" >"${out}/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"${out}/oci-layout"
}

# rbn::sign_cert DIR NAME SUBJECT EXTENSIONS CA_CRT CA_KEY: ECDSA P-256 key (PKCS#8 PEM) and
# certificate DIR/NAME.{key,crt} for SUBJECT with the openssl x509 EXTENSIONS lines, signed by the CA.
rbn::sign_cert() {
  local dir="$1" name="$2" subj="$3" ext="$4" ca_crt="$5" ca_key="$6"
  printf '%s\n' "${ext}" >"${dir}/${name}.ext"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "${dir}/${name}.key" \
    -subj "${subj}" -out "${dir}/${name}.csr" 2>>"${dir}/pki.log"
  openssl x509 -req -in "${dir}/${name}.csr" -CA "${ca_crt}" -CAkey "${ca_key}" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 \
    -extfile "${dir}/${name}.ext" -out "${dir}/${name}.crt" 2>>"${dir}/pki.log"
  rm -f "${dir}/${name}.csr" "${dir}/${name}.ext"
  chmod 600 "${dir}/${name}.key"
}

# ---------------------------------------------------------------------------------------------
# In-cluster mode (the default): rbn-kubelet and rbn-extender run as pods on the worker node
# (hack/worker.sh), installed with `kubectl apply -k` of the local overlay, as operators run them.
# Pods reach nothing on this machine's loopback, so what they use listens on the stack's own
# address instead (the apiserver, the registry, the S3 server, the build hosts' sshd): a private
# address on a veth the stack creates (no dummy links in this kernel) and dev-down deletes.
# RBN_IN_CLUSTER=0 (or RBN_WORKER=0, which leaves the worker node out) runs them as local
# processes instead: the development mode (no image build; a rebuilt binary runs at once).
# dev-up records the mode in $RBN_STATE/mode, so that the scripts and the tests run later find it
# without the variable.

# rbn::in_cluster: the stack runs (or is being brought up) in the in-cluster mode.
rbn::in_cluster() {
  if [[ -f "${RBN_STATE}/mode" ]]; then
    [[ "$(cat "${RBN_STATE}/mode")" == in-cluster ]]
    return
  fi
  local default=1
  [[ "${RBN_WORKER:-1}" != 0 ]] || default=0
  [[ "${RBN_IN_CLUSTER:-${default}}" == 1 ]]
}

# rbn::record_mode: dev-up writes the stack's mode for the scripts and tests run later.
rbn::record_mode() {
  local mode=local
  # Decided before the file exists: a redirection would create it, empty, first.
  if rbn::in_cluster; then mode=in-cluster; fi
  mkdir -p "${RBN_STATE}"
  echo "${mode}" >"${RBN_STATE}/mode"
}

# The stack's link and its /24 (10.254.<apiserver port % 250>): .1 the stack's address (rbn-kubelet's
# node address when it runs as a local process), .2 the worker node (hack/worker.sh), .<10+i> build
# host i (in-cluster mode).
RBN_STACK_LINK="rbnk${RBN_APISERVER_PORT:-16443}"
RBN_STACK_NET="10.254.$((${RBN_APISERVER_PORT:-16443} % 250))"
# The worker node's CNI bridge (hack/worker.sh): its pods' traffic arrives on it, which is what
# rbn-portal captures on this machine (hack/manifests.sh local).
RBN_WORKER_BRIDGE="rbnbr${RBN_APISERVER_PORT:-16443}"

# rbn::stack_link_up: creates the stack's link (idempotent) and prints the stack's address
# (RBN_NODE_ADDRESS overrides it). dev-down deletes the link ($RBN_STATE/node-interface).
rbn::stack_link_up() {
  local addr="${RBN_NODE_ADDRESS:-${RBN_STACK_NET}.1}"
  ip link show "${RBN_STACK_LINK}" >/dev/null 2>&1 || ip link add "${RBN_STACK_LINK}" type veth peer name "${RBN_STACK_LINK}p"
  ip addr replace "${addr}/32" dev "${RBN_STACK_LINK}"
  ip link set "${RBN_STACK_LINK}p" up
  ip link set "${RBN_STACK_LINK}" up
  mkdir -p "${RBN_STATE}"
  echo "${RBN_STACK_LINK}" >"${RBN_STATE}/node-interface"
  echo "${addr}"
}

# rbn::service_address: where the stack's services for pods and hosts listen (registry, S3 server):
# 127.0.0.1, or the stack's address in the in-cluster mode (creating its link).
rbn::service_address() {
  if rbn::in_cluster; then rbn::stack_link_up; else echo 127.0.0.1; fi
}

# ---------------------------------------------------------------------------------------------
# Emulated aarch64 (qemu-user): binfmt_misc with qemu-aarch64 registered with the F flag (the
# kernel opens the interpreter at registration, so it runs inside other mount namespaces too).
# The registration is machine-wide: its users (the rootfs build, each stack with arm64 hosts) take
# and release it; the last release restores what was there before the first took it, recorded in
# $RBN_BINFMT_STATE (on /run: a reboot resets binfmt_misc too).
RBN_BINFMT_DIR=/proc/sys/fs/binfmt_misc
RBN_BINFMT_STATE="${RBN_BINFMT_STATE:-/run/rbn-binfmt}"
RBN_BINFMT_ENTRY=qemu-aarch64
RBN_BINFMT_SPEC=/usr/share/binfmts/qemu-aarch64

# rbn::binfmt_register [ENTRY_FILE_COPY]: registers qemu-aarch64 from qemu-user-static's spec with
# flags PF, or (given a copy of an entry file as the kernel shows it) exactly that registration.
rbn::binfmt_register() {
  local name="${RBN_BINFMT_ENTRY}" interp magic mask offset flags enabled=enabled
  if [[ -n "${1:-}" ]]; then
    enabled="$(sed -n 1p "$1")"
    interp="$(sed -n 's/^interpreter //p' "$1")"
    flags="$(sed -n 's/^flags: //p' "$1")"
    offset="$(sed -n 's/^offset //p' "$1")"
    magic="$(sed -n 's/^magic //p' "$1" | sed 's/../\\x&/g')"
    mask="$(sed -n 's/^mask //p' "$1" | sed 's/../\\x&/g')"
  else
    [[ -f "${RBN_BINFMT_SPEC}" ]] || rbn::die "${RBN_BINFMT_SPEC} missing (run hack/install-deps.sh)"
    interp="$(sed -n 's/^interpreter //p' "${RBN_BINFMT_SPEC}")"
    offset="$(sed -n 's/^offset //p' "${RBN_BINFMT_SPEC}")"
    magic="$(sed -n 's/^magic //p' "${RBN_BINFMT_SPEC}")"
    mask="$(sed -n 's/^mask //p' "${RBN_BINFMT_SPEC}")"
    flags=PF
  fi
  printf ':%s:M:%s:%s:%s:%s:%s' "${name}" "${offset}" "${magic}" "${mask}" "${interp}" "${flags}" \
    >"${RBN_BINFMT_DIR}/register"
  [[ "${enabled}" == enabled ]] || echo 0 >"${RBN_BINFMT_DIR}/${name}"
}

# rbn::binfmt_acquire USER: qemu-aarch64 usable (also in other namespaces) until USER releases it.
rbn::binfmt_acquire() {
  local user="$1" s="${RBN_BINFMT_STATE}" e="${RBN_BINFMT_DIR}/${RBN_BINFMT_ENTRY}"
  mkdir -p "$s/users"
  (
    flock 8
    if [[ ! -f "$s/original" ]]; then
      local mounted=0
      findmnt -rn "${RBN_BINFMT_DIR}" >/dev/null && mounted=1
      rm -f "$s/original.entry"
      [[ ${mounted} == 1 && -f "$e" ]] && cp "$e" "$s/original.entry"
      echo "mounted=${mounted}" >"$s/original"
    fi
    findmnt -rn "${RBN_BINFMT_DIR}" >/dev/null || mount -t binfmt_misc binfmt_misc "${RBN_BINFMT_DIR}"
    if [[ -f "$e" ]] && ! grep -q '^flags: .*F' "$e"; then echo -1 >"$e"; fi # re-registered with F
    [[ -f "$e" ]] || rbn::binfmt_register
    [[ "$(head -1 "$e")" == enabled ]] || echo 1 >"$e"
    : >"$s/users/$(printf '%s' "${user}" | sha256sum | cut -c1-16)"
  ) 8>>"$s/lock"
}

# rbn::binfmt_release USER: USER no longer needs qemu-aarch64; the last user restores the state
# recorded before the first one: the registration as it was (or none), binfmt_misc unmounted if it
# was not mounted and no other registration appeared meanwhile.
rbn::binfmt_release() {
  local user="$1" s="${RBN_BINFMT_STATE}" e="${RBN_BINFMT_DIR}/${RBN_BINFMT_ENTRY}"
  [[ -d "$s/users" ]] || return 0
  (
    flock 8
    rm -f "$s/users/$(printf '%s' "${user}" | sha256sum | cut -c1-16)"
    [[ -z "$(ls -A "$s/users")" && -f "$s/original" ]] || exit 0
    if findmnt -rn "${RBN_BINFMT_DIR}" >/dev/null; then
      if [[ -f "$s/original.entry" ]]; then
        if ! cmp -s "$s/original.entry" "$e"; then
          [[ -f "$e" ]] && echo -1 >"$e"
          rbn::binfmt_register "$s/original.entry"
        fi
      elif [[ -f "$e" ]]; then
        echo -1 >"$e"
      fi
      if grep -q '^mounted=0' "$s/original"; then
        local others; others="$(ls "${RBN_BINFMT_DIR}" | grep -vxE 'register|status' || true)"
        if [[ -z "${others}" ]]; then umount "${RBN_BINFMT_DIR}"
        else rbn::log "binfmt_misc left mounted: registrations made meanwhile: ${others//$'\n'/ }"; fi
      fi
    fi
    rm -f "$s/original" "$s/original.entry" # not the lock, which a waiting user may hold open
  ) 8>>"$s/lock"
}

# The emulated hosts' root filesystem (hack/arm64-rootfs.sh): Debian minbase for arm64 with
# podman and sshd. RBN_ARM64_SUITE defaults to this machine's Debian release.
# catatonit: podman builds the pods' pause image from it; aardvark-dns as on the x86 hosts.
RBN_ARM64_PACKAGES=(openssh-server podman runc conmon netavark aardvark-dns catatonit iptables busybox-static iproute2 ca-certificates)
rbn::arm64_suite() {
  [[ -n "${RBN_ARM64_SUITE:-}" ]] && { echo "${RBN_ARM64_SUITE}"; return; }
  (. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
}
# rbn::arm64_rootfs_path: the cached tarball, keyed by the suite and the package list.
rbn::arm64_rootfs_path() {
  local suite key; suite="$(rbn::arm64_suite)"
  key="$(printf '%s\n' "${suite}" "${RBN_ARM64_PACKAGES[@]}" | sha256sum | cut -c1-12)"
  echo "${RBN_CACHE}/arm64-rootfs/${suite}-${key}.tar.gz"
}
