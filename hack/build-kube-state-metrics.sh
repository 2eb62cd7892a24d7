#!/usr/bin/env bash
# Builds kube-state-metrics (the Node, pod and capacity series of dashboards and alerts) from
# source through the Go module proxy into
# $RBN_CACHE/kube-state-metrics-$KSM_VERSION/kube-state-metrics, statically linked. Idempotent:
# does nothing when the binary exists. Usage: hack/build-kube-state-metrics.sh
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rbn::build_go_tool kube-state-metrics k8s.io/kube-state-metrics/v2 "${KSM_VERSION}" \
  k8s.io/kube-state-metrics/v2
