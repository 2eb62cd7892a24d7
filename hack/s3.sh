#!/usr/bin/env bash
# A local S3 server for the end-to-end tests and the demo: versitygw (Apache-2.0), built once
# through the Go module proxy into $RBN_CACHE/tools and run on 127.0.0.1 only (in the in-cluster
# mode, hack/lib.sh, on the stack's address instead, where pods reach it), its data and
# credentials under $RBN_STATE/s3.
#   hack/s3.sh up     build if needed, start (idempotent), print nothing
#   hack/s3.sh env    print `export RBN_S3_ENDPOINT=... RBN_S3_REGION=... RBN_S3_ACCESS_KEY=... RBN_S3_SECRET_KEY=...`
#   hack/s3.sh down   stop it and remove its data
# RBN_S3_PORT picks the port (default 19000).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
S3_BIN="${RBN_CACHE}/tools/versitygw-${VERSITYGW_VERSION}/versitygw"
S3_DIR="${RBN_STATE}/s3"
S3_PORT="${RBN_S3_PORT:-19000}"
S3_REGION=us-east-1

build() {
  [[ -x "${S3_BIN}" ]] && return 0
  rbn::log "building versitygw ${VERSITYGW_VERSION} into ${S3_BIN%/*} (2-4 minutes, once)"
  mkdir -p "${S3_BIN%/*}"
  # Its own module graph, not the project's: no -tags from goenv.
  (cd "${S3_BIN%/*}" && CGO_ENABLED=0 GOFLAGS= GOBIN="${S3_BIN%/*}" go install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}")
}

env_file() { echo "${S3_DIR}/s3.env"; }

up() {
  build
  if rbn::running s3; then return 0; fi
  rbn::port_in_use "${S3_PORT}" && rbn::die "port ${S3_PORT} is in use: set RBN_S3_PORT"
  mkdir -p "${S3_DIR}/data"
  local addr
  addr="$(rbn::service_address)"
  if [[ ! -f "$(env_file)" ]]; then
    (
      umask 077
      {
        echo "RBN_S3_ENDPOINT=http://${addr}:${S3_PORT}"
        echo "RBN_S3_REGION=${S3_REGION}"
        echo "RBN_S3_ACCESS_KEY=rbn$(openssl rand -hex 8)"
        echo "RBN_S3_SECRET_KEY=$(openssl rand -hex 24)"
      } >"$(env_file)"
    )
  fi
  # shellcheck disable=SC1090
  source "$(env_file)"
  rbn::log "starting versitygw on ${addr}:${S3_PORT} (log: ${S3_DIR}/versitygw.log)"
  # The credentials go through the environment, not argv (ps would show them).
  ROOT_ACCESS_KEY="${RBN_S3_ACCESS_KEY}" ROOT_SECRET_KEY="${RBN_S3_SECRET_KEY}" \
    rbn::start s3 "${S3_DIR}/versitygw.log" "${S3_BIN}" --region "${S3_REGION}" --port "${addr}:${S3_PORT}" posix "${S3_DIR}/data"
  rbn::wait_for_daemon s3 "versitygw on ${addr}:${S3_PORT}" 30 curl -sS --max-time 2 -o /dev/null "http://${addr}:${S3_PORT}/" ||
    { tail -n 20 "${S3_DIR}/versitygw.log" >&2; exit 1; }
}

case "${1:-}" in
  up) up ;;
  env)
    [[ -f "$(env_file)" ]] || rbn::die "no S3 server: run hack/s3.sh up"
    sed 's/^/export /' "$(env_file)"
    ;;
  down)
    rbn::stop s3
    rm -rf "${S3_DIR}"
    ;;
  build) build ;;
  *) rbn::die "usage: $0 up|env|down|build" ;;
esac
