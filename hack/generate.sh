#!/usr/bin/env bash
# Regenerates deepcopy functions and the CRD manifest with controller-gen,
# pinned in hack/tools/go.mod and built into the cache.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONTROLLER_GEN="${RBN_CACHE}/tools/controller-gen"
if [[ ! -x "${CONTROLLER_GEN}" ]]; then
  rbn::log "building controller-gen"
  (cd "${RBN_ROOT}/hack/tools" && go build -o "${CONTROLLER_GEN}" sigs.k8s.io/controller-tools/cmd/controller-gen)
fi
cd "${RBN_ROOT}"
"${CONTROLLER_GEN}" object:headerFile=hack/boilerplate.go.txt crd:crdVersions=v1 \
  paths=./internal/api/... output:crd:dir=./manifests/crd
