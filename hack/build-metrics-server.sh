#!/usr/bin/env bash
# Builds metrics-server (the worker node's resource metrics API: kubectl top) from source through
# the Go module proxy into $RBN_CACHE/metrics-server-$METRICS_SERVER_VERSION/metrics-server,
# statically linked. Idempotent: does nothing when the binary exists. Usage: hack/build-metrics-server.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rbn::build_go_tool metrics-server sigs.k8s.io/metrics-server "${METRICS_SERVER_VERSION}" \
  sigs.k8s.io/metrics-server/cmd/metrics-server \
  "-X sigs.k8s.io/metrics-server/pkg/version.gitVersion=${METRICS_SERVER_VERSION}"
