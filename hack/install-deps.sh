#!/usr/bin/env bash
# Installs the machine packages the dev stack and the local build hosts need (Debian/Ubuntu, apt).
# Idempotent: a fast no-op when everything is present; `apt-get update` runs once, only when
# something is missing. Also checks that Go is installed (it is not installed from here).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The build hosts' podman needs runc (crun fails on hybrid cgroups), conmon, netavark and iptables
# for its bridge network, and catatonit to build the pod pause image; busybox-static is the test
# image; docker-registry, skopeo and apache2-utils (htpasswd) make the test registry; the rest is
# used by the hack/ scripts (gettext-base: envsubst for the demo job). qemu-user-static,
# binfmt-support and debootstrap make the emulated aarch64 build hosts (RBN_ARM64_HOSTS in
# hack/hosts.sh): an arm64 Debian root filesystem run under qemu-user.
PACKAGES=(
  podman runc conmon netavark aardvark-dns catatonit iptables
  openssh-server openssh-sftp-server openssh-client busybox-static openssl iproute2 util-linux procps
  jq curl ca-certificates gettext-base docker-registry skopeo apache2-utils
  containerd containernetworking-plugins conntrack
  qemu-user-static binfmt-support debootstrap
)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  ((EUID == 0)) || rbn::die "missing packages (${missing[*]}): run this script as root"
  command -v apt-get >/dev/null || rbn::die "missing packages (${missing[*]}) and no apt-get here"
  rbn::log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another install on this machine may hold dpkg's lock: wait for it rather than fail.
  apt_wait=(-o DPkg::Lock::Timeout=600)
  apt-get "${apt_wait[@]}" update -qq
  apt-get "${apt_wait[@]}" install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}"
else
  rbn::log "system packages: all present"
fi

# sshd's privilege separation dir (normally created by systemd's tmpfiles, absent without systemd).
mkdir -p /run/sshd && chmod 755 /run/sshd

# Go: required to build and test the project; not installed by this script.
GO="$(command -v go || true)"
[[ -z "${GO}" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
if [[ -z "${GO}" ]]; then
  rbn::die "Go is NOT installed (no 'go' in PATH nor /usr/local/go/bin/go): install Go $(sed -n 's/^go //p' "${RBN_ROOT}/go.mod" 2>/dev/null || echo '1.26') or newer and put it in PATH"
fi
want="$(sed -n 's/^go //p' "${RBN_ROOT}/go.mod" 2>/dev/null || true)"
have="$("${GO}" env GOVERSION 2>/dev/null || true)"
rbn::log "Go: ${have:-unknown} at ${GO}${want:+ (go.mod wants go ${want})}"
[[ "$(command -v go || true)" ]] || rbn::log "note: ${GO} is not in PATH; add $(dirname "${GO}") to PATH"
