#!/usr/bin/env bash
# Builds the root filesystem of the emulated aarch64 build hosts (RBN_ARM64_HOSTS in hack/hosts.sh)
# and prints the path of its tarball: Debian minbase for arm64 with sshd, podman, runc, netavark,
# iptables, busybox-static (the hosts' test image), made by debootstrap under qemu-user from the
# Debian mirror of this machine's apt sources (RBN_DEBIAN_MIRROR overrides it).
# Cached in $RBN_CACHE/arm64-rootfs/<suite>-<hash of suite and packages>.tar.gz: built once (about
# 8 min on 2 cores), reused until the suite or the package list changes; built in a temp dir and
# renamed at the end, so an interrupted build leaves no tarball. Usage: hack/arm64-rootfs.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT="$(rbn::arm64_rootfs_path)"
SUITE="$(rbn::arm64_suite)"

if [[ -f "${OUT}" ]]; then
  echo "${OUT}"
  exit 0
fi

# arm64_mirror: the URI of this machine's apt source for SUITE (deb822 .sources or one-line
# sources.list entries), not its -security or -updates companions.
arm64_mirror() {
  [[ -n "${RBN_DEBIAN_MIRROR:-}" ]] && { echo "${RBN_DEBIAN_MIRROR}"; return; }
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk -v suite="${SUITE}" 'BEGIN { RS = "" }
      { uri = ""; ok = 0
        n = split($0, lines, "\n")
        for (l = 1; l <= n; l++) {
          if (lines[l] ~ /^URIs:/) { split(lines[l], w, /[ \t]+/); uri = w[2] }
          if (lines[l] ~ /^Suites:/) { m = split(lines[l], w, /[ \t]+/); for (k = 2; k <= m; k++) if (w[k] == suite) ok = 1 }
        }
        if (ok && uri != "") { print uri; exit } }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    awk -v suite="${SUITE}" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit } }' "$f"
  done
}
MIRROR="$(arm64_mirror | head -1)"
[[ -n "${MIRROR}" ]] || rbn::die "no apt source for ${SUITE} on this machine: set RBN_DEBIAN_MIRROR"
command -v debootstrap >/dev/null || rbn::die "debootstrap not found (run hack/install-deps.sh)"
[[ -x /usr/bin/qemu-aarch64-static ]] || rbn::die "qemu-aarch64-static not found (run hack/install-deps.sh)"

mkdir -p "$(dirname "${OUT}")"
exec 9>"${OUT}.lock"
flock 9
[[ -f "${OUT}" ]] && { echo "${OUT}"; exit 0; }

# cleanup DIR: debootstrap mounts proc and sys inside the target while it runs; a killed build
# leaves them mounted, and rm must not walk into them.
cleanup() {
  local m
  findmnt -rn -o TARGET | awk -v p="$1" 'index($0, p "/") == 1' | sort -r |
    while read -r m; do umount -l "$(printf '%b' "$m")" 2>/dev/null || true; done
  rm -rf --one-file-system "$1"
}
for stale in "$(dirname "${OUT}")"/.build.*; do [[ -d "${stale}" ]] && cleanup "${stale}"; done

tmp="$(mktemp -d "$(dirname "${OUT}")/.build.XXXXXX")"
user="arm64-rootfs-build-$$"
dpid=""
# An interrupted build takes debootstrap (its own process group) down with it.
trap '[[ -z "${dpid}" ]] || { kill -TERM -- "-${dpid}" 2>/dev/null; wait "${dpid}"; } || true; cleanup "${tmp}"; rbn::binfmt_release "${user}"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# debootstrap runs the arm64 maintainer scripts (its second stage) through binfmt.
rbn::binfmt_acquire "${user}"

start=${SECONDS}
include="$(IFS=,; echo "${RBN_ARM64_PACKAGES[*]}")"
rbn::log "debootstrap ${SUITE} arm64 (${include}) from ${MIRROR}: several minutes (log: ${tmp}/debootstrap.log)"
setsid debootstrap --arch=arm64 --variant=minbase --include="${include}" \
  "${SUITE}" "${tmp}/root" "${MIRROR}" >"${tmp}/debootstrap.log" 2>&1 </dev/null &
dpid=$!
if ! wait "${dpid}"; then
  dpid=""
  tail -20 "${tmp}/debootstrap.log" >&2
  tail -20 "${tmp}/root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  rbn::die "debootstrap failed"
fi
dpid=""
# The downloaded packages (~100 MB) are of no use in the hosts.
rm -f "${tmp}"/root/var/cache/apt/archives/*.deb
tar -C "${tmp}/root" --numeric-owner --xattrs --xattrs-include='security.capability' -czf "${tmp}/rootfs.tar.gz" .
mv -f "${tmp}/rootfs.tar.gz" "${OUT}"
rbn::log "arm64 root filesystem built in $((SECONDS - start))s: ${OUT} ($(du -h "${OUT}" | cut -f1))"
echo "${OUT}"
