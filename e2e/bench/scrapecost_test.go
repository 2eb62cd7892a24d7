package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	hostA = "127.0.1.1:2201"
	hostB = "127.0.1.2:2202"
)

func TestParseRBNMetrics(t *testing.T) {
	text := `# HELP rbn_podman_requests_total Calls.
# TYPE rbn_podman_requests_total counter
rbn_podman_requests_total{host="127.0.1.1:2201",operation="container_stats",result="success"} 40
rbn_podman_requests_total{host="127.0.1.1:2201",operation="container_stats",result="error"} 2
rbn_podman_requests_total{host="127.0.1.1:2201",operation="container_stats",result="not_found"} 0
rbn_podman_requests_total{host="127.0.1.2:2202",operation="events",result="success"} 1
# HELP rbn_host_commands_total Commands.
# TYPE rbn_host_commands_total counter
rbn_host_commands_total{host="127.0.1.2:2202",operation="cgroup_stats",result="success"} 6
rbn_host_commands_total{host="127.0.1.2:2202",operation="cgroup_stats",result="error"} 1
# HELP rbn_ssh_channels_open Channels.
# TYPE rbn_ssh_channels_open gauge
rbn_ssh_channels_open{host="127.0.1.1:2201",user="rbn"} 3
rbn_ssh_channels_open{host="127.0.1.2:2202",user="rbn"} 2
# HELP rbn_ssh_connects_total Connects.
# TYPE rbn_ssh_connects_total counter
rbn_ssh_connects_total{host="127.0.1.1:2201",user="rbn"} 1
rbn_ssh_connects_total{host="127.0.1.2:2202",user="rbn"} 2
`
	got, err := parseRBNMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	want := callCounts{{hostA, "container_stats"}: 42, {hostB, "cgroup_stats"}: 7, {hostB, "events"}: 1}
	if fmt.Sprint(got.calls) != fmt.Sprint(want) {
		t.Errorf("calls = %v, want %v (summed over result, SSH commands with podman's calls)", got.calls, want)
	}
	if got.sshChannels != 5 || got.sshConnects != 3 {
		t.Errorf("ssh channels %v, connects %v; want 5, 3", got.sshChannels, got.sshConnects)
	}
	if _, err := parseRBNMetrics("go_goroutines 7\n"); err == nil {
		t.Error("a page without rbn_podman_requests_total parsed")
	}
	if _, err := parseRBNMetrics("rbn_podman_requests_total{host=\"a\" 1\n"); err == nil {
		t.Error("a malformed page parsed")
	}
}

func TestCallCountsSince(t *testing.T) {
	stats, events, list := callKey{hostA, "container_stats"}, callKey{hostA, "events"}, callKey{hostB, "container_list"}
	tests := []struct {
		name      string
		now, prev callCounts
		want      callCounts
	}{
		{name: "increase", now: callCounts{stats: 30}, prev: callCounts{stats: 5}, want: callCounts{stats: 25}},
		{name: "new series counts from 0", now: callCounts{list: 4}, prev: callCounts{}, want: callCounts{list: 4}},
		{name: "unchanged series left out", now: callCounts{events: 1, stats: 6}, prev: callCounts{events: 1, stats: 5}, want: callCounts{stats: 1}},
		{name: "reset counts from 0 again", now: callCounts{stats: 3}, prev: callCounts{stats: 100}, want: callCounts{stats: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.now.since(tt.prev); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("since = %v, want %v", got, tt.want)
			}
		})
	}
}

// overHosts sums each operation over the hosts; the burst report takes
// the median of that over its rounds, an operation of any round included.
func TestCallCountsOverHosts(t *testing.T) {
	rounds := []callCounts{
		{{hostA, "container_list"}: 3, {hostB, "container_list"}: 4, {hostA, "pod_create"}: 1},
		{{hostA, "container_list"}: 5, {hostB, "container_list"}: 5, {hostB, "volume_ensure"}: 2},
		{{hostB, "container_list"}: 9, {hostA, "volume_ensure"}: 2, {hostB, "volume_ensure"}: 2},
	}
	for i := range rounds {
		rounds[i] = rounds[i].overHosts()
	}
	want := callCounts{{op: "container_list"}: 9, {op: "volume_ensure"}: 2}
	if got := medianCalls(rounds); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("median over hosts = %v, want %v", got, want)
	}
}

func TestLastMetricsAddr(t *testing.T) {
	tests := []struct {
		name, log, want string
	}{
		{name: "text", want: "127.0.0.1:41234", log: `time=2026-01-01T00:00:00Z level=INFO msg="metrics listening" addr=127.0.0.1:41234 profiling=false
`},
		{name: "json", want: "127.0.0.1:5000", log: `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"metrics listening","addr":"127.0.0.1:5000","profiling":false}
`},
		{name: "the last record: a restarted process", want: "127.0.0.1:2", log: `time=t1 level=INFO msg="metrics listening" addr=127.0.0.1:1 profiling=false
time=t2 level=INFO msg="node ready" addr=10.0.0.1:10250
time=t3 level=INFO msg="metrics listening" addr=127.0.0.1:2 profiling=false
`},
		{name: "none", want: "", log: "time=t level=INFO msg=\"listening\" addr=127.0.0.1:3\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lastMetricsAddr(strings.NewReader(tt.log))
			if (err != nil) != (tt.want == "") || got != tt.want {
				t.Errorf("lastMetricsAddr = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestScrapeRounds(t *testing.T) {
	tests := []struct {
		idle, interval time.Duration
		want           int
	}{
		{idle: 60 * time.Second, interval: 15 * time.Second, want: 6},  // never fewer than 6 rounds
		{idle: 20 * time.Second, interval: 10 * time.Second, want: 6},  // at least 60 s
		{idle: 100 * time.Second, interval: 15 * time.Second, want: 7}, // 105 s
		{idle: 60 * time.Second, interval: 30 * time.Second, want: 6},
		{idle: 90 * time.Second, interval: 10 * time.Second, want: 9},
	}
	for _, tt := range tests {
		if got := scrapeRounds(tt.idle, tt.interval); got != tt.want {
			t.Errorf("scrapeRounds(%s, %s) = %d, want %d", tt.idle, tt.interval, got, tt.want)
		}
	}
}

// window is a fake scrape-cost window: CPU in cores per sub-window and the
// podman calls of each.
func window(cpu []float64, calls ...callCounts) idleSample {
	x := idleSample{window: time.Duration(len(cpu)) * 15 * time.Second, cpuSubMed: medianF(cpu), calls: calls}
	for _, c := range cpu {
		x.cpuSeconds += 15 * c
	}
	x.elapsed = x.window
	return x
}

func TestScrapedParts(t *testing.T) {
	for _, pairs := range []int{6, 7} {
		for seed := range uint64(20) {
			got := scrapedParts(pairs, rand.New(rand.NewPCG(seed, 1)))
			firsts, scraped := 0, 0
			for i := range pairs {
				if got[2*i] == got[2*i+1] {
					t.Fatalf("pairs %d, seed %d: pair %d has %v, want one of its two scraped", pairs, seed, i, got[2*i:2*i+2])
				}
				if got[2*i] {
					firsts++
				}
			}
			for _, s := range got {
				if s {
					scraped++
				}
			}
			if scraped != pairs || firsts < pairs/2 || firsts > (pairs+1)/2 {
				t.Errorf("pairs %d, seed %d: %v: %d scraped, %d of them first; want %d, half first", pairs, seed, got, scraped, firsts, pairs)
			}
		}
	}
	// The order is drawn: not every seed gives the same.
	a, b := scrapedParts(6, rand.New(rand.NewPCG(1, 1))), scrapedParts(6, rand.New(rand.NewPCG(2, 1)))
	c := scrapedParts(6, rand.New(rand.NewPCG(3, 1)))
	if slices.Equal(a, b) && slices.Equal(b, c) {
		t.Errorf("three seeds gave the same order %v", a)
	}
}

func TestSplitWindow(t *testing.T) {
	stats := callKey{hostA, "container_stats"}
	x := idleSample{label: "w", nodes: 50, pods: 200, sshConns: 4, sshPeers: 4,
		cpuSubs:     []float64{0.01, 0.03, 0.02, 0.04, 0.01, 0.05},
		subSecs:     []float64{15, 15, 15, 16, 15, 15},
		calls:       []callCounts{{}, {stats: 1}, {}, {stats: 2}, {}, {stats: 1}},
		sshChannels: []float64{4, 5, 4, 6, 4, 5},
		subConnects: []float64{0, 1, 0, 0, 2, 0},
	}
	un, sc := splitWindow(x, func(part int) bool { return part%2 == 1 }, 15*time.Second)
	if !slices.Equal(un.cpuSubs, []float64{0.01, 0.02, 0.01}) || !slices.Equal(sc.cpuSubs, []float64{0.03, 0.04, 0.05}) {
		t.Errorf("CPU split %v / %v", un.cpuSubs, sc.cpuSubs)
	}
	if un.cpuSubMed != 0.01 || sc.cpuSubMed != 0.04 {
		t.Errorf("medians %v / %v, want 0.01 / 0.04", un.cpuSubMed, sc.cpuSubMed)
	}
	if un.span() != 45*time.Second || sc.span() != 46*time.Second {
		t.Errorf("spans %s / %s, want 45s / 46s", un.span(), sc.span())
	}
	if got := fmt.Sprintf("%.2f", sc.cpuSeconds); got != "1.84" { // 0.45 + 0.64 + 0.75
		t.Errorf("scraped CPU-s %s, want 1.84", got)
	}
	// The scraped sub-window of 16 s: its 2 calls count as 1.875 per 15 s.
	if len(un.calls) != 3 || un.calls[1][stats] != 0 || sc.calls[0][stats] != 1 || sc.calls[1][stats] != 1.875 {
		t.Errorf("calls split %v / %v", un.calls, sc.calls)
	}
	if un.sshConnects != 2 || sc.sshConnects != 1 || !slices.Equal(sc.sshChannels, []float64{5, 6, 5}) {
		t.Errorf("SSH: connects %v / %v, channels %v", un.sshConnects, sc.sshConnects, sc.sshChannels)
	}
	if un.sshConns != 4 || sc.sshPeers != 4 || sc.pods != 200 {
		t.Errorf("the whole window's figures not kept: %+v", sc)
	}
}

func TestCostFigures(t *testing.T) {
	stats, events := callKey{hostA, "container_stats"}, callKey{hostA, "events"}
	// The unscraped window has a periodic burst in one sub-window: the
	// medians leave it out, the means do not.
	unscraped := window([]float64{0.01, 0.01, 0.05, 0.01},
		callCounts{events: 1}, callCounts{}, callCounts{events: 1, stats: 8}, callCounts{})
	scraped := window([]float64{0.02, 0.02, 0.02, 0.03},
		callCounts{stats: 25, events: 1}, callCounts{stats: 25}, callCounts{stats: 26}, callCounts{stats: 25, events: 1})
	f := costFigures(unscraped, scraped)
	if got := f.addedCPU(); fmt.Sprintf("%.3f", got) != "0.010" {
		t.Errorf("added CPU = %.3f cores, want 0.010 (medians 0.02 − 0.01)", got)
	}
	if f.calls[0][stats] != 0 || f.calls[1][stats] != 25 || f.added[stats] != 25 {
		t.Errorf("median container_stats per round: unscraped %v, scraped %v, added %v; want 0, 25, 25", f.calls[0][stats], f.calls[1][stats], f.added[stats])
	}
	if f.mean[0][stats] != 2 || f.addedMean[stats] != 23.25 {
		t.Errorf("mean container_stats: unscraped %v, added %v; want 2, 23.25", f.mean[0][stats], f.addedMean[stats])
	}
	if _, ok := f.added[events]; ok {
		t.Errorf("events added %v, want no change (median 0.5 both)", f.added[events])
	}
}

func TestCostFiguresHostTotals(t *testing.T) {
	// Calls that move between operations: the median of the host's sums
	// sees them, the sum of the operations' medians would not.
	stats, list := callKey{hostA, "container_stats"}, callKey{hostA, "container_list"}
	scraped := window([]float64{0, 0, 0}, callCounts{stats: 3}, callCounts{list: 3}, callCounts{})
	f := costFigures(window([]float64{0, 0, 0}, callCounts{}, callCounts{}, callCounts{}), scraped)
	if got := f.added[callKey{hostA, allOps}]; got != 3 {
		t.Errorf("added calls over all operations = %v, want 3", got)
	}
	if f.added[stats] != 0 || f.added[list] != 0 {
		t.Errorf("added per operation = %v, want none", f.added)
	}
	if v := judgeScrapeCost(0, "median rounds", f, nil); !v.met() {
		t.Errorf("the total judged as an operation: %+v", v)
	}
}

func TestJudgeScrapeCost(t *testing.T) {
	tests := []struct {
		name  string
		cpu   float64
		added callCounts
		// scraped is the scraped half's median calls (default: added, as
		// over an unscraped half that made none), unscrapedMax the most
		// calls of an unscraped sub-window.
		scraped, unscrapedMax callCounts
		cpuOK, statsOK, met   bool
		statsRead             float64
		growing               string
	}{
		{name: "a stats read per node and endpoint (before the shared reading)", cpu: 0.008,
			added: callCounts{{hostA, "container_stats"}: 26, {hostB, "container_stats"}: 24},
			cpuOK: true, statsRead: 26},
		{name: "one shared stats read per host", cpu: 0.008,
			added: callCounts{{hostA, "container_stats"}: 1, {hostB, "container_stats"}: 1},
			cpuOK: true, statsOK: true, met: true, statsRead: 1},
		{name: "too much CPU", cpu: 0.021, added: callCounts{{hostA, "container_stats"}: 1}, statsOK: true, statsRead: 1},
		{name: "another operation grows", cpu: 0.005,
			added: callCounts{{hostA, "container_stats"}: 1, {hostB, "container_inspect"}: 12, {hostA, "events"}: 0.5},
			cpuOK: true, statsOK: true, statsRead: 1, growing: "container_inspect on 127.0.1.2:2202: +12"},
		{name: "a list per pod per scrape stands out of a busy host's own calls", cpu: 0.005,
			added:   callCounts{{hostA, "container_stats"}: 1, {hostA, "container_list"}: 250},
			scraped: callCounts{{hostA, "container_list"}: 290}, unscrapedMax: callCounts{{hostA, "container_list"}: 60},
			cpuOK: true, statsOK: true, statsRead: 1, growing: "container_list on 127.0.1.1:2201: +250"},
		{name: "a rise within what the stack makes unscraped is no growth", cpu: 0.005,
			added:   callCounts{{hostA, "container_stats"}: 1, {hostA, "container_inspect"}: 40, {hostB, "system_info"}: 1},
			scraped: callCounts{{hostA, "container_inspect"}: 70, {hostB, "system_info"}: 1}, unscrapedMax: callCounts{{hostA, "container_inspect"}: 95, {hostB, "system_info"}: 1},
			cpuOK: true, statsOK: true, met: true, statsRead: 1},
		{name: "fewer calls than unscraped is no growth", cpu: -0.001, added: callCounts{{hostA, "pod_inspect"}: -3},
			cpuOK: true, statsOK: true, met: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := scrapeFigures{added: tt.added, unscrapedMax: tt.unscrapedMax}
			f.calls[1] = tt.scraped
			if f.calls[1] == nil {
				f.calls[1] = tt.added
			}
			v := judgeScrapeCost(tt.cpu, "median rounds", f, nil)
			if v.cpuOK != tt.cpuOK || v.statsOK != tt.statsOK || v.met() != tt.met || v.statsRead != tt.statsRead || strings.Join(v.growing, "; ") != tt.growing {
				t.Errorf("judgeScrapeCost = %+v (met %v), want cpuOK %v statsOK %v statsRead %v growing %q met %v",
					v, v.met(), tt.cpuOK, tt.statsOK, tt.statsRead, tt.growing, tt.met)
			}
		})
	}
}

func TestScrapeTargets(t *testing.T) {
	node := func(name, ip string, port int32) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
		return n
	}
	got, err := scrapeTargets([]*corev1.Node{node("host1", "10.1.0.2", 10251), node("bench-node-05", "10.1.0.2", 10255)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*len(scrapePaths) {
		t.Fatalf("%d targets, want %d", len(got), 2*len(scrapePaths))
	}
	if g := got[len(scrapePaths)+1]; g.node != "bench-node-05" || g.url != "https://10.1.0.2:10255/metrics/cadvisor" {
		t.Errorf("target = %+v", g)
	}
	if _, err := scrapeTargets([]*corev1.Node{node("n", "10.1.0.2", 0)}); err == nil {
		t.Error("a node without a kubelet port made a target")
	}
}

func TestScrapeResults(t *testing.T) {
	ok := func(path string, ms, bytes int) scrapeResult {
		return scrapeResult{path: path, node: "n", status: 200, took: time.Duration(ms) * time.Millisecond, bytes: bytes}
	}
	timeout := scrapeResult{path: "/metrics/cadvisor", node: "n", took: 10 * time.Second,
		err: &url.Error{Op: "Get", URL: "https://x/metrics/cadvisor", Err: context.DeadlineExceeded}}
	refused := scrapeResult{path: "/metrics", node: "n", err: &url.Error{Op: "Get", URL: "https://x/metrics", Err: errors.New("connection refused")}}
	forbidden := scrapeResult{path: "/metrics/probes", node: "n", status: 403, detail: "Forbidden"}

	rs := []scrapeResult{ok("/metrics", 10, 1000), ok("/metrics", 30, 3000), ok("/metrics", 20, 2000), ok("/metrics/cadvisor", 400, 50000), timeout}
	if err := scrapeFailure(rs); err != nil {
		t.Errorf("a timeout failed the scrape: %v", err)
	}
	for _, bad := range []scrapeResult{refused, forbidden} {
		if err := scrapeFailure(append(rs, bad)); err == nil {
			t.Errorf("%+v did not fail the scrape", bad)
		}
	}
	got := summarizeScrapes(append(rs, forbidden))
	want := []pathStats{
		{path: "/metrics", requests: 3, median: 20 * time.Millisecond, max: 30 * time.Millisecond, medianBytes: 2000},
		{path: "/metrics/cadvisor", requests: 2, median: 5200 * time.Millisecond, max: 10 * time.Second, medianBytes: 50000, timeouts: 1},
		{path: "/metrics/probes", requests: 1, non200: 1},
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("summarizeScrapes =\n%+v\nwant\n%+v", got, want)
	}
}

// TestRenderScrapeCost renders the subsection from fake figures (go test -v
// shows it) and checks that the verdict follows them.
func TestRenderScrapeCost(t *testing.T) {
	stats, list, events := callKey{hostA, "container_stats"}, callKey{hostA, "container_list"}, callKey{hostA, "events"}
	statsB := callKey{hostB, "container_stats"}
	c := &scrapeCost{interval: 15 * time.Second, rounds: 4, nodes: 50, hosts: 4, pods: 1000, measured: true,
		// The stack lists once in an unscraped sub-window too: the scraped
		// half's one list per round is within its own work.
		unscraped: window([]float64{0.011, 0.012, 0.011, 0.013}, callCounts{events: 1}, callCounts{list: 1}, callCounts{}, callCounts{}),
		scraped: window([]float64{0.019, 0.018, 0.020, 0.018},
			callCounts{stats: 1, list: 1, statsB: 1}, callCounts{stats: 1, list: 1, statsB: 1}, callCounts{stats: 1, list: 1, statsB: 1}, callCounts{stats: 2, list: 1, statsB: 1}),
		roundTook: []time.Duration{1200 * time.Millisecond, 900 * time.Millisecond, 1e9, 1100 * time.Millisecond},
		profiled:  true,
		profile:   cpuShares{total: 12 * time.Second, api: 720 * time.Millisecond, gc: 2 * time.Second, span: 2 * time.Minute},
	}
	c.unscraped.sshConns, c.unscraped.sshPeers, c.unscraped.sshChannels = 4, 4, []float64{4, 4, 5, 4}
	c.scraped.sshConns, c.scraped.sshPeers, c.scraped.sshChannels = 4, 4, []float64{4, 6, 4, 4}
	for i := 0; i < 4; i++ {
		for _, p := range scrapePaths {
			c.results = append(c.results, scrapeResult{path: p, node: "n", status: 200, took: 40 * time.Millisecond, bytes: 9000, gzip: p == "/metrics"})
		}
	}
	var w strings.Builder
	renderScrapeCost(func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }, c)
	out := w.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"### Scrape cost (issue #13)",
		"50 nodes over 4 hosts (12-13 nodes per host",
		"| scraped every 15 s | 1.8% (1.9%) | 2 (2.2) | 0 (0) | 1 (1.2) | 1 (1) | 4 to 4 hosts | 6 | 0 |",
		"| added by scraping | +0.7% (+0.7%) | +1.5 (+1.8) | 0 (0) | +1 (+1.2) | +1 (+0.8) |",
		"| all operations | +1.5 (+1.8) | +1 (+1) |",
		"| `container_stats` | +1 (+1.2) | +1 (+1) |",
		"| `events` | 0 (−0.2) | 0 (0) |",
		"| `/metrics` | 4 | 40 ms | 40 ms | 9000 B (gzip) | 0 | 0 |",
		"the kubelet API server (its connections",
		"0.72 CPU-s (6.0%), the collector's background marking 2.00 CPU-s (16.7%)",
		// 0.72 + 2 × 0.72/10 = 0.864 CPU-s over the scraped minute.
		"serving the scrapes took 0.86 CPU-s: **1.4% of a",
		"216 ms per round, 54 ms per request (16 requests)",
		"added CPU +1.4% of a core (CPU profile): met",
		"at most 1 wanted: met",
		"above every unscraped sub-window: none: met; requests",
		"cut off at the scrape timeout (10 s): 0 of 16, none wanted: met. Goal: met.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the rendering", want)
		}
	}
}

// addedOnly is the figures of a scraped half that made the added calls,
// over an unscraped one that made none.
func addedOnly(added callCounts) scrapeFigures {
	f := scrapeFigures{added: added}
	f.calls[1] = added
	return f
}

func TestRenderScrapeGoal(t *testing.T) {
	tests := []struct {
		name string
		v    scrapeVerdict
		want []string
	}{
		{name: "a stats read per node and endpoint",
			v:    judgeScrapeCost(0.012, "median rounds", addedOnly(callCounts{{hostA, "container_stats"}: 26, {hostA, "container_inspect"}: 13}), nil),
			want: []string{"added CPU +1.2% of a core (median rounds): met", "busiest host: +26, at most 1 wanted: **missed**", "container_inspect on 127.0.1.1:2201: +13: **missed**;", "0 of 0, none wanted: met. Goal: **missed**."}},
		{name: "over the CPU goal only",
			v:    judgeScrapeCost(0.025, "CPU profile", addedOnly(callCounts{{hostA, "container_stats"}: 1}), nil),
			want: []string{"added CPU +2.5% of a core (CPU profile): **missed**", "busiest host: +1, at most 1 wanted: met", "none: met; requests", "Goal: **missed**."}},
		{name: "one stats read in a sub-window a little shorter than the interval",
			v:    judgeScrapeCost(0.016, "CPU profile", addedOnly(callCounts{{hostA, "cgroup_stats"}: 1.0004}), nil),
			want: []string{"busiest host: +1, at most 1 wanted: met", "none: met; requests", "Goal: met."}},
		{name: "two stats reads a round",
			v:    judgeScrapeCost(0.016, "CPU profile", addedOnly(callCounts{{hostA, "cgroup_stats"}: 2}), nil),
			want: []string{"busiest host: +2, at most 1 wanted: **missed**", "Goal: **missed**."}},
		{name: "cheap, but scrapes timed out",
			v: judgeScrapeCost(0.003, "CPU profile", addedOnly(callCounts{{hostA, "container_stats"}: 0.2}),
				[]scrapeResult{{path: "/metrics/cadvisor", status: 200}, {path: "/metrics/resource", err: &url.Error{Op: "Get", URL: "https://x/metrics/resource", Err: context.DeadlineExceeded}}}),
			want: []string{"added CPU +0.3% of a core (CPU profile): met", "at most 1 wanted: met", "none: met; requests",
				"cut off at the scrape timeout (10 s): 1 of 2, none wanted: **missed**. Goal: **missed**."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w strings.Builder
			renderScrapeGoal(func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }, 15*time.Second, tt.v)
			out := strings.ReplaceAll(w.String(), "\n", " ")
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in %q", want, out)
				}
			}
		})
	}
}
