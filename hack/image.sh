#!/usr/bin/env bash
# rbn's OCI images (hack/image/Containerfile): rbn-kubelet and rbn-extender FROM scratch with the static
# binaries, CA certificates and the unprivileged user rbn (65532), tagged with the version
# (git describe, as the binaries report it). Built with this machine's podman but in a store of the
# project's own ($RBN_IMAGE_STORE, default $RBN_ROOT/_output/images), never the machine's default
# one; nothing is pulled.
#
# RBN_IMAGE_VERSION overrides the tag (and the version label): a second, different image of the same
# binaries, which the e2e tests roll the Deployment to.
#
# Usage: hack/image.sh [build]   build both images (localhost/rbn/<name>:<version>)
#        hack/image.sh push      build, then push both to the stack's registry (hack/registry.sh:
#                                basic auth on 127.0.0.1:${RBN_REGISTRY_PORT}, from $RBN_STATE/registry/registry.env)
#                                as <registry>/rbn/<name>:<version>; prints the references pushed
#        hack/image.sh version   print the tag
#        hack/image.sh podman ARGS..  podman against the project's image store (inspect, images, rmi)
#        hack/image.sh clean     remove the image store
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STORE="${RBN_IMAGE_STORE:-${RBN_ROOT}/_output/images}"
IMAGES=(rbn-kubelet rbn-extender)

image::version() {
  if [[ -n "${RBN_IMAGE_VERSION:-}" ]]; then echo "${RBN_IMAGE_VERSION}"; return; fi
  git -C "${RBN_ROOT}" describe --always --dirty 2>/dev/null || echo dev
}

# image::podman ARGS...: podman with the project's own storage, run dir and configuration. vfs
# needs no kernel support and the images are two small layers; the run dir holds the store's locks.
image::podman() {
  mkdir -p "${STORE}/storage" "${STORE}/run" "${STORE}/tmp"
  CONTAINERS_CONF="${STORE}/containers.conf" TMPDIR="${STORE}/tmp" \
    podman --root "${STORE}/storage" --runroot "${STORE}/run" --storage-driver vfs "$@"
}

image::write_config() {
  mkdir -p "${STORE}"
  cat >"${STORE}/containers.conf" <<EOF
# hack/image.sh: building needs no runtime, network or cgroups of the machine's configuration.
# Running an image here (hack/image.sh podman run ...) needs rlimits this VM may set (no
# CAP_SYS_RESOURCE).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
events_logger = "none"
cgroup_manager = "cgroupfs"
EOF
}

# image::context DIR: the build context: the binaries and the root filesystem both images share.
image::context() {
  local ctx="$1"
  rm -rf "${ctx}" && mkdir -p "${ctx}/bin" "${ctx}/rootfs/etc/ssl/certs" "${ctx}/rootfs/tmp"
  local b
  for b in "${IMAGES[@]}"; do
    # A dynamically linked binary would not start in an image without a libc.
    ! LC_ALL=C readelf -l "${RBN_ROOT}/bin/${b}" 2>/dev/null | grep -q 'Requesting program interpreter' ||
      rbn::die "bin/${b} is not statically linked (hack/build.sh builds with CGO_ENABLED=0)"
    cp "${RBN_ROOT}/bin/${b}" "${ctx}/bin/${b}"
  done
  cp "${RBN_ROOT}"/bin/rbn-forward-linux-* "${ctx}/bin/"
  [[ -s /etc/ssl/certs/ca-certificates.crt ]] || rbn::die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
  cp /etc/ssl/certs/ca-certificates.crt "${ctx}/rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nrbn:x:65532:65532:rbn:/nonexistent:/sbin/nologin\n' >"${ctx}/rootfs/etc/passwd"
  printf 'root:x:0:\nrbn:x:65532:\n' >"${ctx}/rootfs/etc/group"
  chmod 0644 "${ctx}/rootfs/etc/passwd" "${ctx}/rootfs/etc/group" "${ctx}/rootfs/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "${ctx}/rootfs/tmp"
}

cmd_build() {
  command -v podman >/dev/null || rbn::die "podman not found (run hack/install-deps.sh)"
  "${RBN_ROOT}/hack/build.sh" "${IMAGES[@]}"
  local version ctx="${STORE}/context" b
  version="$(image::version)"
  image::write_config
  image::context "${ctx}"
  for b in "${IMAGES[@]}"; do
    rbn::log "building image localhost/rbn/${b}:${version}"
    image::podman build --quiet --format oci --network none --pull=never --target "${b}" \
      --label "org.opencontainers.image.title=${b}" \
      --label "org.opencontainers.image.version=${version}" \
      --label "org.opencontainers.image.source=https://github.com/remote-build-nodes/rbn" \
      -f "${RBN_ROOT}/hack/image/Containerfile" -t "localhost/rbn/${b}:${version}" "${ctx}" >/dev/null ||
      rbn::die "building the ${b} image failed"
  done
  rm -rf "${ctx}"
}

cmd_push() {
  local env="${RBN_STATE}/registry/registry.env"
  [[ -f "${env}" ]] || rbn::die "no ${env}: start the registry first (hack/registry.sh up)"
  local registry user password
  registry="$(sed -n 's/^REGISTRY=//p' "${env}")"
  user="$(sed -n 's/^USER=//p' "${env}")"
  password="$(sed -n 's/^PASSWORD=//p' "${env}")"
  cmd_build
  local version b
  version="$(image::version)"
  for b in "${IMAGES[@]}"; do
    # The test registry speaks plain HTTP on loopback (hack/registry.sh).
    image::podman push --quiet --tls-verify=false --creds "${user}:${password}" \
      "localhost/rbn/${b}:${version}" "docker://${registry}/rbn/${b}:${version}" ||
      rbn::die "pushing ${b}:${version} to ${registry} failed"
    echo "${registry}/rbn/${b}:${version}"
  done
}

cmd_clean() {
  [[ -d "${STORE}" ]] || return 0
  # vfs layers may hold read-only directories; podman removes what it created.
  image::podman system reset --force >/dev/null 2>&1 || true
  rm -rf "${STORE}"
}

case "${1:-build}" in
  build) cmd_build ;;
  push) cmd_push ;;
  version) image::version ;;
  podman) shift; image::podman "$@" ;;
  clean) cmd_clean ;;
  *) sed -n '2,/^source/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac
