#!/usr/bin/env bash
# Builds metrics-server (the worker node's resource metrics API: kubectl top) from source through
# the Go module proxy into $RBN_CACHE/metrics-server-$METRICS_SERVER_VERSION/metrics-server,
# statically linked. Idempotent: does nothing when the binary exists. Usage: hack/build-metrics-server.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT_DIR="${RBN_CACHE}/metrics-server-${METRICS_SERVER_VERSION}"
BIN="${OUT_DIR}/metrics-server"
SRC_DIR="${RBN_CACHE}/src/metrics-server-${METRICS_SERVER_VERSION}"

[[ -x "${BIN}" ]] && { rbn::log "metrics-server ${METRICS_SERVER_VERSION} already in ${OUT_DIR}"; exit 0; }

export GOWORK=off GOFLAGS="-buildvcs=false" CGO_ENABLED=0
mkdir -p "${OUT_DIR}"
exec 9>"${OUT_DIR}/.build.lock"
flock 9
[[ -x "${BIN}" ]] && { rbn::log "metrics-server ${METRICS_SERVER_VERSION} built by a concurrent run"; exit 0; }

start=${SECONDS}
rbn::log "resolving sigs.k8s.io/metrics-server ${METRICS_SERVER_VERSION} in ${SRC_DIR}"
rm -rf "${SRC_DIR}" && mkdir -p "${SRC_DIR}"
# A module of our own that requires metrics-server: its go.mod's versions, not ours, decide the
# dependencies (go get resolves them as metrics-server's own build does).
printf 'package main\n\nimport _ "sigs.k8s.io/metrics-server/cmd/metrics-server"\n' >"${SRC_DIR}/tools.go"
(cd "${SRC_DIR}" && go mod init rbn.local/build-metrics-server >/dev/null 2>&1 &&
  go get "sigs.k8s.io/metrics-server@${METRICS_SERVER_VERSION}" && go mod tidy)
rbn::log "building metrics-server ${METRICS_SERVER_VERSION}"
(cd "${SRC_DIR}" && go build -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=${METRICS_SERVER_VERSION}" \
  -o "${BIN}.tmp" sigs.k8s.io/metrics-server/cmd/metrics-server)
mv -f "${BIN}.tmp" "${BIN}"
rbn::log "built metrics-server into ${OUT_DIR} in $((SECONDS - start))s"
