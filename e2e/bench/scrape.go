package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ---------------------------------------------------------------------------------------------
// A Prometheus kubelet scrape of every node (issue #13).

// scrapePaths are the kubelet endpoints prometheus-operator's kubelet
// ServiceMonitor scrapes on every node.
var scrapePaths = []string{"/metrics", "/metrics/cadvisor", "/metrics/resource", "/metrics/probes"}

const (
	// scrapeConcurrency bounds a round's requests in flight. Prometheus
	// spreads its targets over the interval; issuing each round at once,
	// 8 at a time, keeps "the cost of one scrape" one round's figure.
	scrapeConcurrency = 8
	// defaultScrapeTimeout is Prometheus's default scrape_timeout.
	defaultScrapeTimeout = 10 * time.Second
	scraperAccount       = "bench-scraper"
)

// scrapeTimeout is how long a scrape may take: Prometheus's default,
// which it never lets exceed the interval.
func scrapeTimeout(interval time.Duration) time.Duration {
	return min(defaultScrapeTimeout, interval)
}

// scrapeTarget is one node's endpoint.
type scrapeTarget struct {
	node, path, url string
}

// scrapeResult is one GET of a target.
type scrapeResult struct {
	path   string
	node   string
	status int           // 0 when no answer came
	took   time.Duration // until the body was read, as Prometheus's scrape_duration_seconds
	bytes  int           // body as received (gzip when the node compressed it)
	gzip   bool
	err    error
	detail string // the start of a non-200 answer's body
}

// timedOut reports a GET that gave up after its timeout: a slow stack,
// which Prometheus would record as the target down for that scrape.
func (r scrapeResult) timedOut() bool {
	var ne net.Error
	return errors.As(r.err, &ne) && ne.Timeout()
}

// kubeletScraper GETs every node's kubelet endpoints, as Prometheus does.
type kubeletScraper struct {
	targets []scrapeTarget
	token   string
	// One client per path: Prometheus has one scrape pool, with its own
	// kept-alive connections, per endpoint of the ServiceMonitor.
	clients map[string]*http.Client
}

// scrapeTargets are the endpoints of nodes at the address and port their
// status advertises (InternalIP, daemonEndpoints.kubeletEndpoint), where
// Prometheus's kubelet Endpoints lead.
func scrapeTargets(nodes []*corev1.Node) ([]scrapeTarget, error) {
	var out []scrapeTarget
	for _, n := range nodes {
		ip := ""
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ip = a.Address
				break
			}
		}
		port := n.Status.DaemonEndpoints.KubeletEndpoint.Port
		if ip == "" || port == 0 {
			return nil, fmt.Errorf("node %s advertises no kubelet endpoint (InternalIP %q, port %d)", n.Name, ip, port)
		}
		base := "https://" + net.JoinHostPort(ip, strconv.Itoa(int(port)))
		for _, p := range scrapePaths {
			out = append(out, scrapeTarget{node: n.Name, path: p, url: base + p})
		}
	}
	return out, nil
}

// newKubeletScraper makes a scraper of nodes, every interval, with a token
// of a service account in ns valid for valid; stop removes its
// cluster-wide RBAC.
func (b *bench) newKubeletScraper(ctx context.Context, ns string, nodes []string, interval, valid time.Duration) (_ *kubeletScraper, stop func(), err error) {
	var objs []*corev1.Node
	for _, name := range nodes {
		n, err := b.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, err
		}
		objs = append(objs, n)
	}
	targets, err := scrapeTargets(objs)
	if err != nil {
		return nil, nil, err
	}
	token, stop, err := b.stack.NodeScraperToken(ctx, ns, scraperAccount, "rbn-bench-scraper-"+ns, map[string]string{benchLabel: "scale"}, valid)
	if err != nil {
		return nil, nil, err
	}
	s := &kubeletScraper{targets: targets, token: token, clients: map[string]*http.Client{}}
	for _, p := range scrapePaths {
		s.clients[p] = &http.Client{Timeout: scrapeTimeout(interval), Transport: &http.Transport{
			// The bench measures the cost of scraping, not whom it trusts:
			// the nodes' serving certificate is not verified.
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // cost, not trust
			MaxIdleConnsPerHost: 2,
		}}
	}
	return s, stop, nil
}

// round GETs every target once, scrapeConcurrency at a time.
func (s *kubeletScraper) round(ctx context.Context) []scrapeResult {
	out := make([]scrapeResult, len(s.targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(scrapeConcurrency, len(s.targets)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = s.get(ctx, s.targets[i])
			}
		}()
	}
	for i := range s.targets {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// get is one scrape of t, with the headers Prometheus sends.
func (s *kubeletScraper) get(ctx context.Context, t scrapeTarget) scrapeResult {
	r := scrapeResult{path: t.path, node: t.node}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
	// Set by hand, so the body is counted as it came (Go would otherwise
	// ask for gzip itself and count it unpacked).
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", "Prometheus/rbn-bench")
	start := time.Now()
	resp, err := s.clients[t.path].Do(req)
	if err != nil {
		r.took, r.err = time.Since(start), err
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r.took, r.err = time.Since(start), err
	r.status, r.bytes, r.gzip = resp.StatusCode, len(body), resp.Header.Get("Content-Encoding") == "gzip"
	if r.status != http.StatusOK && !r.gzip {
		r.detail = string(body[:min(len(body), 200)])
	}
	return r
}

// scrapeFailure is the first scrape that shows a broken stack: an answer
// other than 200, or an error other than a timeout.
func scrapeFailure(rs []scrapeResult) error {
	for _, r := range rs {
		switch {
		case r.err != nil && !r.timedOut():
			return fmt.Errorf("scrape %s of node %s: %w", r.path, r.node, r.err)
		case r.err == nil && r.status != http.StatusOK:
			return fmt.Errorf("scrape %s of node %s: HTTP %d %s", r.path, r.node, r.status, r.detail)
		}
	}
	return nil
}

// pathStats sums up the scrapes of one path.
type pathStats struct {
	path             string
	requests         int
	median, max      time.Duration
	medianBytes      int
	gzip             bool // some answers came gzip-compressed
	non200, timeouts int
}

// summarizeScrapes sums up scrapes by path, in scrapePaths's order.
func summarizeScrapes(rs []scrapeResult) []pathStats {
	var out []pathStats
	for _, p := range scrapePaths {
		st := pathStats{path: p}
		var took []time.Duration
		var sizes []float64
		for _, r := range rs {
			if r.path != p {
				continue
			}
			st.requests++
			took = append(took, r.took)
			st.max = max(st.max, r.took)
			switch {
			case r.timedOut():
				st.timeouts++
			case r.err == nil && r.status != http.StatusOK:
				st.non200++
			case r.err == nil:
				sizes = append(sizes, float64(r.bytes))
				st.gzip = st.gzip || r.gzip
			}
		}
		if st.requests == 0 {
			continue
		}
		st.median, st.medianBytes = median(took), int(medianF(sizes))
		out = append(out, st)
	}
	return slices.Clip(out)
}
