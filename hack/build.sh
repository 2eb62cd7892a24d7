#!/usr/bin/env bash
# Builds rbn's binaries into $RBN_ROOT/bin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}"
mkdir -p bin
cmds=("$@")
((${#cmds[@]})) || cmds=(rbn-kubelet rbn-extender)
version="$(git describe --always --dirty 2>/dev/null || echo dev)"
for cmd in "${cmds[@]}"; do
  rbn::log "building ${cmd}"
  go build -trimpath -ldflags "-s -w -X github.com/remote-build-nodes/rbn/internal/version.Version=${version}" \
    -o "bin/${cmd}" "./cmd/${cmd}"
  # rbn-kubelet runs rbn-forward in pods on build hosts of every
  # architecture (clusterServices.forwarderDir): built for each, beside it.
  if [[ "${cmd}" == rbn-kubelet ]]; then
    for arch in amd64 arm64; do
      GOOS=linux GOARCH="${arch}" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
        -o "bin/rbn-forward-linux-${arch}" ./cmd/rbn-forward
    done
  fi
done
