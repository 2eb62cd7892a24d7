#!/bin/sh
# The mount namespace of an emulated arm64 build host (hack/hosts.sh, RBN_ARM64_HOSTS): run by
# `unshare --mount --propagation private` as HOST_DIR/root's holder. Mounts the root filesystem
# HOST_DIR/root with proc, sys, dev, a tmpfs on /run, the host dir at its own path and this
# machine's / read-only at /.machine, pivots into it (not chroot: `podman exec` would land in the
# machine's root), then waits; the host's sshd and podman service join the namespace with nsenter.
# Usage: hosts-arm64-ns.sh HOST_DIR/ (the slash: hosts.sh recognises its host's processes by
# "HOST_DIR/" on their command line)
set -eu
d="${1%/}"
root="$d/root"
mount --bind "$root" "$root" # pivot_root wants a mount point (and podman import a remountable /)
mount --bind "$d" "$root$d"
mount --bind / "$root/.machine"
mount -o remount,bind,ro "$root/.machine"
mount -t proc proc "$root/.machine/proc" # for the machine's iptables, run chrooted there
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mkdir -p "$root/run/sshd" "$root/run/lock"
cd "$root"
pivot_root . .oldroot
cd /
umount -l /.oldroot
touch "$d/ns-ready"
# Not exec: this shell (the machine's, loaded before the pivot) keeps HOST_DIR on its command line,
# by which hack/hosts.sh recognises the holder.
sleep infinity
