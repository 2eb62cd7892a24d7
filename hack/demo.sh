#!/usr/bin/env bash
# make demo: on a fresh machine, bring the whole stack up and run a real job on a remote
# build node that reaches neither the registry nor S3: its image, its recipe and its result
# all travel through rbn-kubelet.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODES="${NODES:-2}"
ISOLATED="${RBN_ISOLATED_HOSTS:-${NODES}}"
"${RBN_ROOT}/hack/install-deps.sh"
"${RBN_ROOT}/hack/registry.sh" up >/dev/null
RBN_S3=1 NODES="${NODES}" RBN_ISOLATED_HOSTS="${ISOLATED}" "${RBN_ROOT}/hack/dev-up.sh" >/dev/null
eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
eval "$("${RBN_ROOT}/hack/s3.sh" env)"
eval "$("${RBN_ROOT}/hack/registry.sh" env)"
k() { echo "+ kubectl $*" >&2; "${K8S_BIN}/kubectl" "$@"; }

# s3 METHOD PATH [BODY_FILE]: a SigV4-signed request to the local S3 server, the response
# body on stdout; the credentials go to curl on its standard input, never on a command line.
s3() {
  local method="$1" path="$2" body="${3:-/dev/null}"
  local args=(-fsS -K - --aws-sigv4 "aws:amz:${RBN_S3_REGION}:s3" -X "${method}"
    -H "x-amz-content-sha256: $(sha256sum <"${body}" | cut -d' ' -f1)")
  [[ "${body}" == /dev/null ]] || args+=(-T "${body}")
  printf 'user = "%s:%s"\n' "${RBN_S3_ACCESS_KEY}" "${RBN_S3_SECRET_KEY}" |
    curl "${args[@]}" "${RBN_S3_ENDPOINT}/${path}"
}

NODE="rbn-host-${ISOLATED%% *}"
BUCKET="rbn-demo"

if rbn::in_cluster; then
  echo; echo "== rbn as operators run it: kubectl apply -k of manifests/ (an overlay with the local registry and PKI)"
  k -n rbn-system get deployments,pods -o wide
  echo "Each build host's node is served by the rbn-kubelet replica its Lease names, while that replica renews its own:"
  k -n rbn-system get leases -l rbn.dev/lease -o custom-columns='LEASE:.metadata.name,KIND:.metadata.labels.rbn\.dev/lease,HOLDER:.spec.holderIdentity,RENEWED:.spec.renewTime'
fi

echo; echo "== The build hosts, as Kubernetes nodes"
k get remotebuildnodes -o custom-columns='NAME:.metadata.name,PHASE:.status.phase,ADDRESS:.spec.address,ARCH:.status.host.architecture,IMAGES:.spec.imagePull'
k get nodes -L kubernetes.io/arch

echo; echo "== ${NODE} has no route to the registry (${REGISTRY}) nor to S3 (${RBN_S3_ENDPOINT})"
HOST_INDEX="${ISOLATED%% *}"
# Where they listen: loopback for local processes, the stack's address in the in-cluster mode.
S3_HOSTPORT="${RBN_S3_ENDPOINT#*://}"
for target in "${REGISTRY}" "${S3_HOSTPORT%%/*}"; do
  echo "+ on ${NODE}: nc ${target%:*} ${target##*:}"
  if "${RBN_ROOT}/hack/hosts.sh" podman "${HOST_INDEX}" run --rm --network host localhost/rbn/busybox:1.0 \
    nc -w 3 "${target%:*}" "${target##*:}" </dev/null; then
    rbn::die "${NODE} reached ${target}: it is not isolated"
  fi
done
# The job's image is not on the host yet: it comes through rbn-kubelet.
"${RBN_ROOT}/hack/hosts.sh" podman "${HOST_INDEX}" rmi --force --ignore "${IMAGE}" >/dev/null

echo; echo "== A recipe in S3, the credentials in Secrets (they never reach the build host)"
s3 PUT "${BUCKET}" >/dev/null 2>&1 || true # the bucket may exist from an earlier run
mkdir -p "${RBN_STATE}/demo"
printf "<image name='demo-appliance' schemaversion='7.4'/>\n" >"${RBN_STATE}/demo/demo.kiwi"
s3 PUT "${BUCKET}/recipes/demo.kiwi" "${RBN_STATE}/demo/demo.kiwi" >/dev/null
echo "s3://${BUCKET}/recipes/demo.kiwi uploaded"
k delete job rbn-demo-build --ignore-not-found --wait=true >/dev/null
k apply -f - <<YAML
apiVersion: v1
kind: Secret
metadata: {name: demo-s3}
stringData:
  endpoint: ${RBN_S3_ENDPOINT}
  region: ${RBN_S3_REGION}
  accessKeyID: ${RBN_S3_ACCESS_KEY}
  secretAccessKey: ${RBN_S3_SECRET_KEY}
---
# rbn-kubelet reads the job's S3 credentials as the job's service account.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-demo-s3}
rules: [{apiGroups: [""], resources: [secrets], resourceNames: [demo-s3], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-demo-s3}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-demo-s3}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
---
apiVersion: v1
kind: Secret
metadata: {name: demo-registry}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: $(printf '{"auths":{"%s":{"username":"%s","password":"%s"}}}' "${REGISTRY}" "${USER}" "${PASSWORD}" | base64 -w0)
YAML

echo; echo "== The job, scheduled by the standard kube-scheduler onto ${NODE}"
DEMO_NODE="${NODE}" DEMO_IMAGE="${IMAGE}" DEMO_BUCKET="${BUCKET}" \
  envsubst '${DEMO_NODE} ${DEMO_IMAGE} ${DEMO_BUCKET}' <"${RBN_ROOT}/hack/demo/job.yaml" | k apply -f -
k wait --for=condition=Complete job/rbn-demo-build --timeout=300s || {
  k describe job rbn-demo-build; k describe pods -l job-name=rbn-demo-build; exit 1; }
k get pods -l job-name=rbn-demo-build -o wide
POD="$("${K8S_BIN}/kubectl" get pods -l job-name=rbn-demo-build -o jsonpath='{.items[0].metadata.name}')"

echo; echo "== What rbn-kubelet did for it (pod events)"
k get events --field-selector "involvedObject.name=${POD}" --sort-by=.lastTimestamp \
  -o custom-columns='REASON:.reason,MESSAGE:.message' | grep -E '^(REASON|Pulled|Downloaded|Uploaded|Started)'

echo; echo "== Its logs, through the kubelet API that rbn-kubelet serves"
k logs "${POD}" -c build

echo; echo "== The built image, in S3"
built="$(k logs "${POD}" -c build | sed -n 's/^image built: //p')"
in_s3="$(s3 GET "${BUCKET}/images/demo-appliance.raw" | sha256sum | cut -d' ' -f1)"
echo "s3://${BUCKET}/images/demo-appliance.raw sha256 ${in_s3}"
[[ "${in_s3}" == "${built}" ]] || rbn::die "the object in S3 is not what the job built (${built})"
echo "matches what the job built"

if rbn::in_cluster; then
  echo; echo "== kubectl top: metrics-server reads each node's kubelet API, rbn-kubelet's for the build hosts"
  # metrics-server has a figure for a node once it has scraped it twice (15 s apart).
  top_all() { [[ "$("${K8S_BIN}/kubectl" top nodes --no-headers 2>/dev/null | grep -c '^rbn-host-.*Mi')" -ge "${NODES}" ]]; }
  rbn::wait_for "kubectl top nodes listing every build host" 120 top_all ||
    { "${K8S_BIN}/kubectl" -n kube-system logs deployment/metrics-server --tail=20 >&2; rbn::die "metrics-server has no figures for the build hosts"; }
  k top nodes
fi

cat <<MSG

The stack keeps running. Explore it with:
  export KUBECONFIG=${KUBECONFIG}
  export PATH=${K8S_BIN}:\$PATH   # the matching kubectl
  kubectl get rbn,nodes,pods -A
  hack/hosts.sh podman 1 ps -a    # what runs on build host 1 (RBN_STATE=${RBN_STATE})
Tear it all down with: make dev-down
MSG
