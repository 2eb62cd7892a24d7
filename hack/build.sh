#!/usr/bin/env bash
# Builds rbn's binaries into $RBN_ROOT/bin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}"
mkdir -p bin
cmds=("$@")
((${#cmds[@]})) || cmds=(rbn-kubelet rbn-extender)
for cmd in "${cmds[@]}"; do
  rbn::log "building ${cmd}"
  go build -trimpath -ldflags "-s -w -X github.com/remote-build-nodes/rbn/internal/version.Version=$(git describe --always --dirty 2>/dev/null || echo dev)" \
    -o "bin/${cmd}" "./cmd/${cmd}"
done
