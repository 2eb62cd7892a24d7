#!/usr/bin/env bash
# Builds the local control-plane binaries from source through the Go module proxy:
#   etcd (go.etcd.io/etcd/server/v3 $ETCD_VERSION) and kube-apiserver, kube-scheduler,
#   kube-controller-manager, kubectl, and the worker node's kubelet and kube-proxy
#   (k8s.io/kubernetes $K8S_VERSION), into $K8S_BIN.
# Idempotent: does nothing when all binaries exist and the stamp records the same versions.
# Usage: hack/build-k8s.sh [--force]
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_BINARIES=(kube-apiserver kube-scheduler kube-controller-manager kubectl kubelet kube-proxy)
ALL_BINARIES=(etcd "${K8S_BINARIES[@]}")
STAMP="${K8S_BIN}/.versions"
WANT_STAMP="k8s=${K8S_VERSION} etcd=${ETCD_VERSION}"
SRC_DIR="${RBN_CACHE}/src"
BUILD_TAGS="selinux,notest,grpcnotrace"

force=false
case "${1:-}" in
  --force) force=true ;;
  "") ;;
  *) rbn::die "usage: $0 [--force]" ;;
esac

# The wrapper modules live outside any workspace or module of the caller.
export GOWORK=off GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0

cached() {
  [[ -f "${STAMP}" && "$(cat "${STAMP}")" == "${WANT_STAMP}" ]] || return 1
  local b
  for b in "${ALL_BINARIES[@]}"; do
    [[ -x "${K8S_BIN}/${b}" ]] || return 1
  done
}

if ! ${force} && cached; then
  rbn::log "control-plane binaries ${WANT_STAMP} already in ${K8S_BIN}"
  exit 0
fi

mkdir -p "${K8S_BIN}" "${SRC_DIR}"
# Serialise concurrent builds (a dev shell and a CI clone on the same machine share the cache).
exec 9>"${K8S_BIN}/.build.lock"
flock 9
if ! ${force} && cached; then
  rbn::log "control-plane binaries ${WANT_STAMP} built by a concurrent run"
  exit 0
fi
rm -f "${STAMP}"
# Output dirs left by a run killed with SIGKILL; not the lock file, which a run waiting on it holds
# open (removed, the next run would lock a new file and build beside the running one).
find "${K8S_BIN}" -maxdepth 1 -name '.build.*' ! -name .build.lock -exec rm -rf {} +

tmp_out="$(mktemp -d "${K8S_BIN}/.build.XXXXXX")"
trap 'rm -rf "${tmp_out}"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# new_wrapper DIR MODULE: a fresh throwaway module (go.mod only) in DIR.
new_wrapper() {
  local dir="$1" module="$2"
  rm -rf "${dir}"
  mkdir -p "${dir}"
  (cd "${dir}" && go mod init "${module}" >/dev/null 2>&1)
}

[[ "${K8S_VERSION}" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || rbn::die "unexpected K8S_VERSION ${K8S_VERSION}"
k8s_minor="${BASH_REMATCH[1]}"
staging_version="v0.${k8s_minor}.${BASH_REMATCH[2]}"

start=${SECONDS}

# --- etcd -------------------------------------------------------------------
etcd_dir="${SRC_DIR}/etcd-${ETCD_VERSION}"
rbn::log "resolving etcd ${ETCD_VERSION} in ${etcd_dir}"
new_wrapper "${etcd_dir}" rbn.local/build-etcd
(cd "${etcd_dir}" && go get -tool "go.etcd.io/etcd/server/v3@${ETCD_VERSION}")
rbn::log "building etcd"
(cd "${etcd_dir}" && go build -trimpath -ldflags "-s -w" -o "${tmp_out}/etcd" go.etcd.io/etcd/server/v3)

# --- kubernetes -------------------------------------------------------------
k8s_dir="${SRC_DIR}/k8s-${K8S_VERSION}"
rbn::log "resolving k8s.io/kubernetes ${K8S_VERSION} in ${k8s_dir}"
new_wrapper "${k8s_dir}" rbn.local/build-k8s
k8s_gomod="$(cd "${k8s_dir}" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@${K8S_VERSION}")"
[[ -f "${k8s_gomod}" ]] || rbn::die "no go.mod for k8s.io/kubernetes@${K8S_VERSION} (got '${k8s_gomod}')"
# Staging modules are required at v0.0.0 and replaced by ./staging upstream; point them at the
# published v0.<minor>.<patch> tags instead.
mapfile -t staging < <(grep -E '^[[:space:]]*(require[[:space:]]+)?k8s\.io/[^[:space:]]+[[:space:]]+v0\.0\.0([[:space:]]|$)' "${k8s_gomod}" \
  | sed -E 's/^[[:space:]]*(require[[:space:]]+)?//' | awk '{print $1}' | sort -u)
((${#staging[@]} > 0)) || rbn::die "found no v0.0.0 staging modules in ${k8s_gomod}"
replace_args=()
for m in "${staging[@]}"; do
  replace_args+=("-replace=${m}=${m}@${staging_version}")
done
rbn::log "replacing ${#staging[@]} staging modules with ${staging_version}"
(cd "${k8s_dir}" && go mod edit "${replace_args[@]}")

k8s_pkgs=()
for b in "${K8S_BINARIES[@]}"; do
  k8s_pkgs+=("k8s.io/kubernetes/cmd/${b}")
done
get_args=()
for p in "${k8s_pkgs[@]}"; do
  get_args+=("${p}@${K8S_VERSION}")
done
(cd "${k8s_dir}" && go get -tool "${get_args[@]}")

build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=(
    "-X ${pkg}.gitVersion=${K8S_VERSION}"
    "-X ${pkg}.gitMajor=1"
    "-X ${pkg}.gitMinor=${k8s_minor}"
    "-X ${pkg}.gitTreeState=clean"
    "-X ${pkg}.buildDate=${build_date}"
  )
done
rbn::log "building ${K8S_BINARIES[*]} (cold: ~10 min on 2 cores)"
(cd "${k8s_dir}" && go build -trimpath -tags="${BUILD_TAGS}" -ldflags "${ldflags[*]}" -o "${tmp_out}/" "${k8s_pkgs[@]}")

# --- install atomically-ish: every binary complete before the stamp is written ---------------
for b in "${ALL_BINARIES[@]}"; do
  [[ -x "${tmp_out}/${b}" ]] || rbn::die "build produced no ${b}"
  mv -f "${tmp_out}/${b}" "${K8S_BIN}/${b}"
done
printf '%s\n' "${WANT_STAMP}" >"${STAMP}.tmp"
mv -f "${STAMP}.tmp" "${STAMP}"
rbn::log "built ${ALL_BINARIES[*]} into ${K8S_BIN} in $((SECONDS - start))s"
