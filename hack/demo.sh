#!/usr/bin/env bash
# make demo: on a fresh machine, bring the whole stack up and run a real job
# on a remote build node, showing the node, the pod and its logs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${NODES:-2}" "${RBN_ROOT}/hack/dev-up.sh" >/dev/null
eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
k() { echo "+ kubectl $*" >&2; "${K8S_BIN}/kubectl" "$@"; }

echo; echo "== The build hosts, as Kubernetes nodes"
k get remotebuildnodes
k get nodes -L kubernetes.io/arch -L rbn.dev/remote-build-node

echo; echo "== A build job, scheduled by the standard kube-scheduler onto a remote build node"
k delete job rbn-demo-build --ignore-not-found --wait=true >/dev/null
k apply -f "${RBN_ROOT}/hack/demo/job.yaml"
k wait --for=condition=Complete job/rbn-demo-build --timeout=180s || {
  k describe job rbn-demo-build; k describe pods -l job-name=rbn-demo-build; exit 1; }
k get pods -l job-name=rbn-demo-build -o wide

echo; echo "== Its logs, through the kubelet API that rbn-kubelet serves"
k logs job/rbn-demo-build -c fetch-recipe
k logs job/rbn-demo-build -c build

cat <<MSG

The stack keeps running. Explore it with:
  export KUBECONFIG=${KUBECONFIG}
  export PATH=${K8S_BIN}:\$PATH   # the matching kubectl
  kubectl get rbn,nodes,pods -A
  hack/hosts.sh podman 1 ps -a    # what runs on build host 1 (RBN_STATE=${RBN_STATE})
Tear it all down with: make dev-down
MSG
