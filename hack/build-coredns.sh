#!/usr/bin/env bash
# Builds CoreDNS (the worker node's cluster DNS) from source through the Go module proxy into
# $RBN_CACHE/coredns-$COREDNS_VERSION/coredns, statically linked.
# Only the plugins the local cluster uses are compiled in (CoreDNS's documented "custom main":
# dnsserver.Directives plus blank plugin imports), which keeps the build a fraction of a full one.
# Idempotent: does nothing when the binary exists, built with the same plugins. Usage: hack/build-coredns.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT_DIR="${RBN_CACHE}/coredns-${COREDNS_VERSION}"
BIN="${OUT_DIR}/coredns"
SRC_DIR="${RBN_CACHE}/src/coredns-${COREDNS_VERSION}"
# The plugins, in the order of CoreDNS's plugin.cfg (the order requests pass through them).
PLUGINS=(reload bind ready health errors log loadbalance cache kubernetes loop forward)
STAMP="${OUT_DIR}/.plugins"

cached() { [[ -x "${BIN}" && -f "${STAMP}" && "$(cat "${STAMP}")" == "${PLUGINS[*]}" ]]; }
cached && { rbn::log "coredns ${COREDNS_VERSION} already in ${OUT_DIR}"; exit 0; }

export GOWORK=off GOFLAGS="-buildvcs=false" CGO_ENABLED=0
mkdir -p "${OUT_DIR}"
exec 9>"${OUT_DIR}/.build.lock"
flock 9
cached && { rbn::log "coredns ${COREDNS_VERSION} built by a concurrent run"; exit 0; }

start=${SECONDS}
rbn::log "resolving github.com/coredns/coredns ${COREDNS_VERSION} in ${SRC_DIR}"
rm -rf "${SRC_DIR}" && mkdir -p "${SRC_DIR}"
{
  printf 'package main\n\nimport (\n\t"github.com/coredns/coredns/core/dnsserver"\n\t"github.com/coredns/coredns/coremain"\n\n'
  for p in "${PLUGINS[@]}"; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "${p}"; done
  printf ')\n\nfunc init() {\n\tdnsserver.Directives = []string{\n'
  for p in "${PLUGINS[@]}"; do printf '\t\t"%s",\n' "${p}"; done
  printf '\t}\n}\n\nfunc main() { coremain.Run() }\n'
} >"${SRC_DIR}/main.go"
(cd "${SRC_DIR}" && go mod init rbn.local/build-coredns >/dev/null 2>&1 &&
  go get "github.com/coredns/coredns@${COREDNS_VERSION}" && go mod tidy)
rbn::log "building coredns ${COREDNS_VERSION} (plugins: ${PLUGINS[*]})"
(cd "${SRC_DIR}" && go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" \
  -o "${BIN}.tmp" .)
mv -f "${BIN}.tmp" "${BIN}"
echo "${PLUGINS[*]}" >"${STAMP}"
rbn::log "built coredns into ${OUT_DIR} in $((SECONDS - start))s"
