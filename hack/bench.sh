#!/usr/bin/env bash
# make bench: brings up a local stack of its own (RBN_BENCH_NODES build hosts, default 4), runs
# TestBench and TestBenchTransfer (e2e/bench_test.go, build tag bench; the harness is package
# e2e/bench) against it; then, in a second stack (rbn in the cluster, a worker node, one build
# host), TestBenchServices (ssh and scp through a Service, issue #14). It writes
# docs/benchmarks.md and tears each stack down whatever happens. Nothing here fails on speed; it
# fails only on a broken stack.
#
# Environment (all optional):
#   RBN_STATE, RBN_APISERVER_PORT, RBN_HOST_SSH_PORT, RBN_KUBELET_PORT
#                          as for hack/dev-up.sh, so that the benchmark can run beside other
#                          stacks; RBN_STATE defaults to _output/bench (not the dev stack's)
#   RBN_BENCH_NODES        build hosts (default 4)
#   RBN_BENCH_OUT          where the report goes (default docs/benchmarks.md)
#   RBN_BENCH_NOTES        hand-written notes appended to the report (default docs/benchmarks-notes.md)
#   RBN_BENCH_SECTIONS     latency,burst,streams,probes,scale,takeover,transfer,services (default all);
#                          services alone replaces section 7 of the existing report; transfer
#                          (TestBenchTransfer's section 6) runs with another section only
#   RBN_BENCH_SSH_MIB      the services section's scp size (default 1024); RBN_BENCH_SSH_RUNS runs (default 3)
#   RBN_BENCH_RUNS         measured pod start/status runs (default 20; RBN_BENCH_WARMUP 2 more first)
#   RBN_BENCH_BURST_PODS   pods per burst (default 100); RBN_BENCH_BURST_ROUNDS rounds (default 3)
#   RBN_BENCH_LOG_MIB      the streamed log's size (default 200); RBN_BENCH_LOG_RUNS reads each way (default 3)
#   RBN_BENCH_EXEC_RUNS    exec round trips each way (default 20)
#   RBN_BENCH_SCALE_NODES  RemoteBuildNodes in the scale test (default 50)
#   RBN_BENCH_SCALE_PODS_PER_NODE          default 20
#   RBN_BENCH_IDLE_SECONDS each idle measurement window (default 60)
#   RBN_BENCH_SCRAPE_INTERVAL_SECONDS  the scale section's Prometheus-like kubelet scrape (issue #13) every
#                          so many seconds (default 15), in windows of RBN_BENCH_IDLE_SECONDS (at least 60)
#                          in whole intervals, at least 4
#   RBN_KUBELET_PROFILING  1 (the default here): rbn-kubelet serves Go's profiles, which the scrape cost reads
#                          (and saves, merged, as scrape-cpu.pb.gz beside the report)
#   RBN_BENCH_PROBE_PODS   pods per probe round (default 200); RBN_BENCH_PROBE_WINDOWS windows of
#                          RBN_BENCH_PROBE_WINDOW_SECONDS each (default 3 of 20)
# The test log goes to $RBN_STATE.log, rbn-kubelet's log to $RBN_STATE.rbn-kubelet.log.
RBN_STATE="${RBN_STATE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/_output/bench}"
export RBN_STATE
# rbn-kubelet runs as a local process in the first stack (the development mode): the benchmark reads
# its log file, its process's CPU time and memory, and starts a second replica beside it (the takeover
# section). The in-cluster replicas' takeover is measured by e2e/incluster_takeover_test.go (make
# test). The services section needs rbn-portal, which runs in the cluster: the second stack.
export RBN_IN_CLUSTER=0
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=hack/goenv.sh
source "${RBN_ROOT}/hack/goenv.sh"
cd "${RBN_ROOT}" || exit

out="${RBN_BENCH_OUT:-${RBN_ROOT}/docs/benchmarks.md}"
log="${RBN_STATE%/}.log"
# A -tags flag replaces the tags in GOFLAGS: pass goenv's with ours.
go_tags="bench,${RBN_GO_TAGS}"

# The exact command line, for the report: the make target, the knobs that were set, and what it ran.
knobs=()
for v in $(compgen -v | grep -E '^RBN_(BENCH_[A-Z_]+|STATE|APISERVER_PORT|HOST_SSH_PORT|KUBELET_PORT|WORKER|KUBELET_PROFILING)$' | sort); do
  [[ "${v}" =~ ^RBN_BENCH_(OUT|COMMAND|NOTES|NODES)$ ]] && continue
  val="${!v}"
  [[ "${v}" == RBN_STATE ]] && val="${val#"${RBN_ROOT}/"}"
  knobs+=("${v}=${val}")
done
# The scale section's scrape cost reads rbn-kubelet's CPU profiles (served on its metrics address,
# which the first stack keeps on loopback): RBN_KUBELET_PROFILING=0 measures without them.
export RBN_KUBELET_PROFILING="${RBN_KUBELET_PROFILING:-1}"

# "services" is the second stack's; the other sections are the first's.
run_local=1 run_services=1 run_transfer=1
if [[ -n "${RBN_BENCH_SECTIONS:-}" ]]; then
  IFS=, read -ra wanted <<<"${RBN_BENCH_SECTIONS}"
  rest=()
  run_services=0 run_transfer=0
  for sec in "${wanted[@]}"; do
    case "${sec}" in
      services) run_services=1 ;;
      transfer) run_transfer=1 ;;
      *) rest+=("${sec}") ;;
    esac
  done
  if ((${#rest[@]} == 0)); then
    # Section 6 goes into TestBench's report: it does not run alone.
    ((run_transfer == 0)) || rbn::die "RBN_BENCH_SECTIONS=transfer: name one of TestBench's sections with it"
    run_local=0
  else
    RBN_BENCH_SECTIONS="$(IFS=,; echo "${rest[*]}")"
    export RBN_BENCH_SECTIONS
  fi
fi
run_re='^TestBench(Transfer)?$'
((run_transfer)) || run_re='^TestBench$'
go_test=(go test -tags "${go_tags}" -count=1 -run "${run_re}" -v -timeout 120m ./e2e/)
services_test=(go test -tags "${go_tags}" -count=1 -run '^TestBenchServices$' -v -timeout 60m ./e2e/)
export RBN_BENCH_COMMAND="${knobs[*]} RBN_BENCH_NODES=${RBN_BENCH_NODES:-4} hack/bench.sh (make bench) → ${go_test[*]}"
export RBN_BENCH_SERVICES_COMMAND="${knobs[*]} hack/bench.sh (make bench; in-cluster, NODES=1) → ${services_test[*]}"

rbn::log "vetting and building the benchmark (tags ${go_tags})"
go vet -tags "${go_tags}" ./e2e/ ./e2e/bench/ ./e2e/framework/

# shellcheck disable=SC2317 # run by the trap
cleanup() {
  cp -f "${RBN_STATE}/kubelet/rbn-kubelet.log" "${RBN_STATE%/}.rbn-kubelet.log" 2>/dev/null || true
  "${RBN_ROOT}/hack/dev-down.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"${RBN_ROOT}/hack/dev-down.sh" >/dev/null 2>&1 || true
status=0

# bench_env: the environment the benchmark's tests read, for the stack just brought up.
bench_env() {
  eval "$("${RBN_ROOT}/hack/cluster.sh" env)"
  export RBN_E2E_KUBECONFIG="${KUBECONFIG}" RBN_E2E_KUBECTL="${K8S_BIN}/kubectl" RBN_E2E_STATE="${RBN_STATE}" RBN_E2E_ROOT="${RBN_ROOT}"
}

# Beside the state, not in it: hack/dev-down.sh removes the state with each stack.
parts="${RBN_STATE%/}.report"
rm -rf "${parts}" && mkdir -p "${parts}"
report="${parts}/benchmarks.md"
transfer="${parts}/transfer.md"
services="${parts}/services.md"
if ((run_local)); then
  rbn::log "bringing up the benchmark stack in ${RBN_STATE} (log: ${log})"
  # With the S3 server (hack/s3.sh) for TestBenchTransfer.
  RBN_S3=1 NODES="${RBN_BENCH_NODES:-4}" "${RBN_ROOT}/hack/dev-up.sh" >"${log}" 2>&1 || { tail -n 30 "${log}" >&2; exit 1; }
  bench_env
  eval "$("${RBN_ROOT}/hack/s3.sh" env)"
  rbn::log "running the benchmarks (~30-40 minutes)"
  RBN_BENCH_NOTES="${RBN_BENCH_NOTES:-${RBN_ROOT}/docs/benchmarks-notes.md}" RBN_BENCH_OUT="${report}" \
    RBN_BENCH_TRANSFER_OUT="${transfer}" "${go_test[@]}" 2>&1 | tee -a "${log}" || status=$?
  if [[ -f "${report}" ]]; then
    # TestBenchTransfer (issue #7's 1 GiB upload) runs after TestBench: its section goes after it.
    if [[ -f "${transfer}" ]]; then
      cat "${transfer}" >>"${report}"
    else
      printf '\n## 6. S3 transfers\n\nNot measured in this run: TestBenchTransfer wrote no report (see %s).\n' "${log##*/}" >>"${report}"
    fi
  fi
  cp -f "${RBN_STATE}/kubelet/rbn-kubelet.log" "${RBN_STATE%/}.rbn-kubelet.log" 2>/dev/null || true
  "${RBN_ROOT}/hack/dev-down.sh" >/dev/null 2>&1 || true
elif [[ -f "${out}" ]]; then
  # Only the services section: the rest of the report stays as it was.
  awk '/^## 7\. ssh and scp through a Service/ {skip = 1; next} /^## / {skip = 0} !skip' "${out}" >"${report}"
fi

if ((run_services)); then
  rbn::log "bringing up the in-cluster benchmark stack (a worker node, rbn-portal, one build host) in ${RBN_STATE}"
  RBN_IN_CLUSTER=1 NODES=1 "${RBN_ROOT}/hack/dev-up.sh" >>"${log}" 2>&1 || { tail -n 30 "${log}" >&2; exit 1; }
  bench_env
  rbn::log "running the services benchmark (~5 minutes)"
  RBN_IN_CLUSTER=1 RBN_BENCH_SERVICES_OUT="${services}" "${services_test[@]}" 2>&1 | tee -a "${log}" || status=$?
  if [[ -f "${services}" ]]; then
    { echo; cat "${services}"; } >>"${report}"
  else
    printf '\n## 7. ssh and scp through a Service\n\nNot measured in this run: TestBenchServices wrote no report (see %s).\n' "${log##*/}" >>"${report}"
  fi
fi

if [[ -f "${report}" ]]; then
  cp -f "${report}" "${out}"
  rbn::log "wrote ${out}"
fi
((status == 0)) || rbn::log "the benchmark run failed (exit ${status}): see ${log}; the report says what was not measured"
exit "${status}"
