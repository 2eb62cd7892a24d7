#!/usr/bin/env bash
# A container registry on this machine's loopback for tests: Debian's docker-registry
# (distribution), listening on 127.0.0.1:${RBN_REGISTRY_PORT:-15000} only (in the in-cluster mode,
# hack/lib.sh, on the stack's address instead, where pods and containerd reach it), storage under
# $RBN_STATE/registry, htpasswd (bcrypt) basic auth so that pulls need credentials.
#
# Usage: hack/registry.sh up      start it (idempotent) and push the test images
#        hack/registry.sh down    stop it and remove its state
#        hack/registry.sh env     print its settings as shell assignments (registry.env)
#
# `up` writes $RBN_STATE/registry/registry.env (REGISTRY, USER, PASSWORD, IMAGE, IMAGE_EXTRA) and
# $RBN_STATE/registry/registries.conf (this machine's registries.conf plus the registry as an
# insecure, plain-HTTP one), which hosts.sh gives the build hosts' podman and kubelet.sh gives
# rbn-kubelet. Test images, built here from the static busybox (no network needed):
#   IMAGE       = <registry>/rbn/busybox:1.0        one layer L1 (busybox root filesystem)
#   IMAGE_EXTRA = <registry>/rbn/busybox-extra:1.0  layers L1 and L2 (one more file): pulling it
#                 after IMAGE must fetch L2 and its config only.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${RBN_STATE}/registry"
PORT="${RBN_REGISTRY_PORT:-15000}"
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
EOF
    { cat /etc/containers/registries.conf 2>/dev/null || true
      printf '\n# hack/registry.sh: the test registry speaks plain HTTP\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "${ADDR}"
    } >"${DIR}/registries.conf"
    rbn::log "starting docker-registry on ${ADDR} (log: ${DIR}/registry.log)"
    rbn::start registry "${DIR}/registry.log" docker-registry serve "${DIR}/config.yml"
    rbn::wait_for_daemon registry "registry at http://${ADDR}/v2/ asking for credentials" 30 registry::answers ||
      { tail -n 20 "${DIR}/registry.log" >&2; exit 1; }
    registry::push_images
  fi
  registry::env
}

cmd_down() {
  rbn::stop registry
  rm -rf "${DIR}"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) registry::env ;;
  *) sed -n '2,/^source/{/^#/s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac
