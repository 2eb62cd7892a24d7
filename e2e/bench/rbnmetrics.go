package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ---------------------------------------------------------------------------------------------
// rbn-kubelet's own metrics (internal/metrics): its podman calls and SSH channels.

// callKey is one build host's operation, as rbn_podman_requests_total and
// rbn_host_commands_total label it (their operations' names differ).
type callKey struct{ host, op string }

// callCounts are podman calls and SSH commands by host and operation.
type callCounts map[callKey]float64

// since is the increase of c over prev, series by series: a series absent
// from prev counts from 0, and one that went down (rbn-kubelet restarted)
// counts from 0 again, as Prometheus's increase() does. Series that did
// not grow are left out.
func (c callCounts) since(prev callCounts) callCounts {
	out := callCounts{}
	for k, v := range c {
		d := v - prev[k]
		if d < 0 {
			d = v
		}
		if d > 0 {
			out[k] = d
		}
	}
	return out
}

// callHosts are the hosts of any of cs, sorted.
func callHosts(cs ...callCounts) []string {
	return callField(func(k callKey) string { return k.host }, cs...)
}

// callOps are the operations of any of cs, sorted.
func callOps(cs ...callCounts) []string {
	return callField(func(k callKey) string { return k.op }, cs...)
}

// callField is field of every key of cs, sorted, each once.
func callField(field func(callKey) string, cs ...callCounts) []string {
	var out []string
	for _, c := range cs {
		for k := range c {
			out = append(out, field(k))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// rbnReading is what the scrape-cost windows read of rbn-kubelet's metrics
// at one moment.
type rbnReading struct {
	calls       callCounts // rbn_podman_requests_total and rbn_host_commands_total, summed over result
	sshChannels float64    // rbn_ssh_channels_open, summed over hosts
	sshConnects float64    // rbn_ssh_connects_total, summed over hosts
}

// parseRBNMetrics reads an rbn-kubelet /metrics page (the text format).
func parseRBNMetrics(text string) (rbnReading, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return rbnReading{}, fmt.Errorf("parse rbn-kubelet's metrics: %w", err)
	}
	r := rbnReading{calls: callCounts{}}
	for _, name := range []string{"rbn_podman_requests_total", "rbn_host_commands_total"} {
		for _, m := range families[name].GetMetric() {
			k := callKey{host: labelValue(m, "host"), op: labelValue(m, "operation")}
			r.calls[k] += m.GetCounter().GetValue()
		}
	}
	for _, m := range families["rbn_ssh_channels_open"].GetMetric() {
		r.sshChannels += m.GetGauge().GetValue()
	}
	for _, m := range families["rbn_ssh_connects_total"].GetMetric() {
		r.sshConnects += m.GetCounter().GetValue()
	}
	if len(families["rbn_podman_requests_total"].GetMetric()) == 0 {
		return r, fmt.Errorf("no rbn_podman_requests_total in rbn-kubelet's metrics")
	}
	return r, nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// readKubeletMetrics reads rbn-kubelet's own metrics at url.
func (b *bench) readKubeletMetrics(ctx context.Context, url string) (rbnReading, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return rbnReading{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rbnReading{}, fmt.Errorf("rbn-kubelet's metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return rbnReading{}, fmt.Errorf("rbn-kubelet's metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return rbnReading{}, fmt.Errorf("rbn-kubelet's metrics: GET %s: %s", url, resp.Status)
	}
	return parseRBNMetrics(string(body))
}

// kubeletMetricsURL is where the local rbn-kubelet serves its own metrics.
// The stack configures metricsBindAddress 127.0.0.1:0 (hack/dev-up.sh:
// several stacks share the machine), so the port is in the log only.
func (b *bench) kubeletMetricsURL() (string, error) {
	f, err := os.Open(b.stack.KubeletLog())
	if err != nil {
		return "", err
	}
	defer f.Close()
	addr, err := lastMetricsAddr(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", b.stack.KubeletLog(), err)
	}
	return "http://" + addr + "/metrics", nil
}

// lastMetricsAddr is the address of the last "metrics listening" record of
// an rbn log (internal/metrics.Serve), text or JSON: the running process's
// when rbn-kubelet was restarted.
func lastMetricsAddr(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	addr := ""
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "metrics listening") {
			continue
		}
		if strings.HasPrefix(line, "{") {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" && rec.Addr != "" {
				addr = rec.Addr
			}
			continue
		}
		if a := logfmtField(line, "addr"); a != "" && strings.Contains(line, `msg="metrics listening"`) {
			addr = a
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if addr == "" {
		return "", fmt.Errorf(`no "metrics listening" record`)
	}
	return addr, nil
}
