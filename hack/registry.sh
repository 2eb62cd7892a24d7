#!/usr/bin/env bash
# A container registry on this machine's loopback for tests: Debian's docker-registry
# (distribution), listening on 127.0.0.1:${RBN_REGISTRY_PORT:-15000} only (in the in-cluster mode,
# hack/lib.sh, on the stack's address instead, where pods and containerd reach it), storage under
# $RBN_STATE/registry, htpasswd (bcrypt) basic auth so that pulls need credentials.
#
# Usage: hack/registry.sh up         start it (idempotent) and push the test images (with
#                                    RBN_ARM64_HOSTS set, the multi-arch ones too)
#        hack/registry.sh multiarch  push the multi-arch test images (registry up)
#        hack/registry.sh down       stop it and remove its state
#        hack/registry.sh env        print its settings as shell assignments (registry.env)
#
# `up` writes $RBN_STATE/registry/registry.env (REGISTRY, USER, PASSWORD, IMAGE, IMAGE_EXTRA,
# FAULT_REGISTRY) and $RBN_STATE/registry/registries.conf (this machine's registries.conf plus the
# registry as an insecure, plain-HTTP one), which hosts.sh gives the build hosts' podman and
# kubelet.sh gives rbn-kubelet. FAULT_REGISTRY (the next port, ${RBN_REGISTRY_FAULT_PORT}) is
# listed there as plain HTTP too, and nothing listens on it: the end-to-end tests put a proxy of
# the registry there that stalls or cuts what it relays (e2e/registryproxy_test.go). Test images, built here from the static busybox (no network needed):
#   IMAGE       = <registry>/rbn/busybox:1.0        one layer L1 (busybox root filesystem)
#   IMAGE_EXTRA = <registry>/rbn/busybox-extra:1.0  layers L1 and L2 (one more file): pulling it
#                 after IMAGE must fetch L2 and its config only.
# Multi-arch test images (`multiarch`; the arm64 busybox comes from the emulated hosts' root
# filesystem, hack/arm64-rootfs.sh, built first if it is not cached: about 8 minutes):
#   IMAGE_MULTIARCH = <registry>/rbn/multiarch:1   an OCI index with a linux/amd64 and a
#                     linux/arm64/v8 manifest: busybox of that architecture and /arch holding its
#                     name (amd64, arm64), so `cat /arch` shows which variant a host pulled
#   IMAGE_AMD64ONLY = <registry>/rbn/amd64only:1   an OCI index with the linux/amd64 manifest only:
#                     an arm64 host must refuse it (no variant for its platform)
# Both are made with podman manifest create/add/push in a throwaway storage under the state dir;
# `multiarch` appends them to registry.env.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${RBN_STATE}/registry"
PORT="${RBN_REGISTRY_PORT:-15000}"
FAULT_PORT="${RBN_REGISTRY_FAULT_PORT:-$((PORT + 1))}"
ADDR="127.0.0.1:${PORT}" # cmd_up sets the address it listens on
USER_NAME="rbn"

registry::env() { cat "${DIR}/registry.env"; }

registry::answers() { [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${ADDR}/v2/")" == 401 ]]; }

registry::push_images() {
  local work="${DIR}/images" password
  password="$(sed -n 's/^PASSWORD=//p' "${DIR}/registry.env")"
  rm -rf "${work}" && mkdir -p "${work}"
  rbn::busybox_rootfs_tar "${work}/l1.tar" etc/rbn-test-image "rbn registry test image"
  local x; x="$(mktemp -d "${work}/l2.XXXXXX")"
  mkdir -p "$x/etc" && echo "the extra layer" >"$x/etc/rbn-extra"
  tar -C "$x" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "${work}/l2.tar" . && rm -rf "$x"
  rbn::oci_layout "${work}/busybox" 1.0 '{"Cmd":["sh"]}' "${work}/l1.tar"
  rbn::oci_layout "${work}/busybox-extra" 1.0 '{"Cmd":["sh"]}' "${work}/l1.tar" "${work}/l2.tar"
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"${work}/policy.json"
  local name
  for name in busybox busybox-extra; do
    skopeo --policy "${work}/policy.json" copy --quiet --dest-tls-verify=false --dest-creds "${USER_NAME}:${password}" \
      "oci:${work}/${name}:1.0" "docker://${ADDR}/rbn/${name}:1.0" ||
      rbn::die "pushing rbn/${name}:1.0 to ${ADDR} failed"
  done
  rm -rf "${work}"
}

# registry::push_multiarch: IMAGE_MULTIARCH and IMAGE_AMD64ONLY (see the header).
registry::push_multiarch() {
  local work="${DIR}/multiarch" password addr rootfs arch
  [[ -f "${DIR}/registry.env" ]] && rbn::running registry || rbn::die "the registry is not up (hack/registry.sh up)"
  password="$(sed -n 's/^PASSWORD=//p' "${DIR}/registry.env")"
  addr="$(sed -n 's/^REGISTRY=//p' "${DIR}/registry.env")"
  rootfs="$("${RBN_ROOT}/hack/arm64-rootfs.sh")"
  rm -rf "${work}" && mkdir -p "${work}/arm64"
  tar -C "${work}/arm64" -xzf "${rootfs}" ./usr/bin/busybox
  rbn::busybox_rootfs_tar "${work}/amd64.tar" arch amd64
  RBN_BUSYBOX="${work}/arm64/usr/bin/busybox" rbn::busybox_rootfs_tar "${work}/arm64.tar" arch arm64
  # This machine's podman on storage of its own (vfs: no mounts to leave behind), removed after;
  # its runroot in /tmp (podman wants it shorter than 50 characters).
  local run; run="$(mktemp -d /tmp/rbn-multiarch.XXXXXX)"
  trap 'rm -rf "'"${run}"'"' EXIT
  printf '[engine]\nlock_type = "file"\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\ntmp_dir = "%s"\n' \
    "${work}/tmp" >"${work}/containers.conf"
  local pm=(env CONTAINERS_CONF="${work}/containers.conf" podman --root "${work}/storage"
    --runroot "${run}" --storage-driver vfs)
  local creds=(--tls-verify=false --creds "${USER_NAME}:${password}")
  local -A variant=([amd64]="" [arm64]=v8)
  for arch in amd64 arm64; do
    "${pm[@]}" import --quiet --os linux --arch "${arch}" ${variant[$arch]:+--variant "${variant[$arch]}"} \
      --change 'CMD=["sh"]' "${work}/${arch}.tar" "localhost/rbn-multiarch/${arch}:1" >/dev/null
  done
  local list name arches
  for name in multiarch amd64only; do
    list="localhost/rbn-multiarch/${name}-list:1"
    arches=(amd64 arm64)
    [[ "${name}" == amd64only ]] && arches=(amd64)
    "${pm[@]}" manifest create "${list}" >/dev/null
    for arch in "${arches[@]}"; do
      "${pm[@]}" manifest add --os linux --arch "${arch}" ${variant[$arch]:+--variant "${variant[$arch]}"} \
        "${list}" "containers-storage:localhost/rbn-multiarch/${arch}:1" >/dev/null
    done
    "${pm[@]}" manifest push --quiet --all --format oci "${creds[@]}" "${list}" "docker://${addr}/rbn/${name}:1" ||
      rbn::die "pushing rbn/${name}:1 to ${addr} failed"
  done
  rm -rf "${work}" "${run}"
  sed -i '/^IMAGE_MULTIARCH=/d; /^IMAGE_AMD64ONLY=/d' "${DIR}/registry.env"
  printf 'IMAGE_MULTIARCH=%s\nIMAGE_AMD64ONLY=%s\n' "${addr}/rbn/multiarch:1" "${addr}/rbn/amd64only:1" >>"${DIR}/registry.env"
}

cmd_up() {
  command -v docker-registry >/dev/null || rbn::die "docker-registry not found (run hack/install-deps.sh)"
  mkdir -p "${DIR}/data"
  ADDR="$(rbn::service_address):${PORT}"
  if ! rbn::running registry; then
    rbn::port_in_use "${PORT}" && rbn::die "port ${PORT} is in use: set RBN_REGISTRY_PORT"
    local password; password="$(openssl rand -hex 16)"
    htpasswd -Bbc "${DIR}/htpasswd" "${USER_NAME}" "${password}" 2>/dev/null
    cat >"${DIR}/config.yml" <<YAML
version: 0.1
log: {level: warn, fields: {service: registry}}
storage:
  filesystem: {rootdirectory: ${DIR}/data}
  delete: {enabled: true}
http:
  addr: ${ADDR}
  secret: $(openssl rand -hex 16)
auth:
  htpasswd: {realm: rbn-test-registry, path: ${DIR}/htpasswd}
YAML
    cat >"${DIR}/registry.env" <<EOF
REGISTRY=${ADDR}
USER=${USER_NAME}
PASSWORD=${password}
IMAGE=${ADDR}/rbn/busybox:1.0
IMAGE_EXTRA=${ADDR}/rbn/busybox-extra:1.0
FAULT_REGISTRY=${ADDR%:*}:${FAULT_PORT}
EOF
    { cat /etc/containers/registries.conf 2>/dev/null || true
      printf '\n# hack/registry.sh: the test registry speaks plain HTTP\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "${ADDR}"
      printf '\n# hack/registry.sh: where the e2e tests proxy the registry, plain HTTP too\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "${ADDR%:*}:${FAULT_PORT}"
    } >"${DIR}/registries.conf"
    rbn::log "starting docker-registry on ${ADDR} (log: ${DIR}/registry.log)"
    rbn::start registry "${DIR}/registry.log" docker-registry serve "${DIR}/config.yml"
    rbn::wait_for_daemon registry "registry at http://${ADDR}/v2/ asking for credentials" 30 registry::answers ||
      { tail -n 20 "${DIR}/registry.log" >&2; exit 1; }
    registry::push_images
    [[ -z "${RBN_ARM64_HOSTS:-}" ]] || registry::push_multiarch
  fi
  registry::env
}

cmd_down() {
  rbn::stop registry
  rm -rf "${DIR}"
}

case "${1:-}" in
  up) cmd_up ;;
  multiarch) registry::push_multiarch; registry::env ;;
  down) cmd_down ;;
  env) registry::env ;;
  *) sed -n '2,/^source/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac
