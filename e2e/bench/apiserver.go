package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// ---------------------------------------------------------------------------------------------
// Nodes and the apiserver's request counts.

// readyNodes returns those of names whose Node is Ready now.
func (b *bench) readyNodes(ctx context.Context, names []string) []string {
	list, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: remoteNodeLabel + "=true"})
	if err != nil {
		return nil
	}
	ready := map[string]bool{}
	for _, n := range list.Items {
		ready[n.Name] = framework.NodeReady(&n)
	}
	var out []string
	for _, n := range names {
		if ready[n] {
			out = append(out, n)
		}
	}
	return out
}

func (b *bench) waitNodesReady(ctx context.Context, names []string, timeout time.Duration) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	return framework.Poll(ctx, fmt.Sprintf("%d nodes Ready", len(names)), timeout, time.Second, func() (bool, string) {
		list, err := b.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: remoteNodeLabel + "=true"})
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, n := range list.Items {
			if want[n.Name] && framework.NodeReady(&n) {
				ready++
			}
		}
		return ready == len(names), fmt.Sprintf("%d Ready", ready)
	})
}

// quiesce waits until nothing writes pod status or events for 5 s: rbn-kubelet
// drains its queued status updates and events (at its client's rate) after
// a burst, and a measurement window must not catch that. Gives up after 3
// minutes, which the report shows as the settle time.
func (b *bench) quiesce(ctx context.Context) time.Duration {
	start := time.Now()
	writes := func(m map[string]float64) float64 {
		n := 0.0
		for k, v := range m {
			verb, res, _ := strings.Cut(k, " ")
			if (res == "events" || res == "pods/status" || res == "pods") && verb != "GET" && verb != "LIST" && verb != "WATCH" {
				n += v
			}
		}
		return n
	}
	prev, err := b.apiserverRequests(ctx)
	for err == nil && time.Since(start) < 3*time.Minute {
		if err = pause(ctx, 5*time.Second); err != nil {
			break
		}
		var cur map[string]float64
		if cur, err = b.apiserverRequests(ctx); err != nil {
			break
		}
		if writes(cur) == writes(prev) {
			return time.Since(start)
		}
		prev = cur
	}
	b.logf("stack not quiet after %s (%v): measuring anyway", time.Since(start).Round(time.Second), err)
	return time.Since(start)
}

const nonResource = "(non-resource: /metrics, /healthz, ...)"

// apiserverRequests reads apiserver_request_total, summed per verb and
// resource. The metric has no client label: everything else on the stack
// (scheduler, controller-manager, rbn-extender) is in it too.
func (b *bench) apiserverRequests(ctx context.Context) (map[string]float64, error) {
	raw, err := b.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	return parseAPIServerRequests(string(raw)), nil
}

// parseAPIServerRequests sums apiserver_request_total of a /metrics page
// per "VERB resource[/subresource]", non-resource requests under one key.
func parseAPIServerRequests(metrics string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		labelText, valueText, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(valueText), 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(labelText, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		key := nonResource
		if labels["resource"] != "" {
			key = labels["verb"] + " " + labels["resource"]
			if labels["subresource"] != "" {
				key += "/" + labels["subresource"]
			}
		}
		out[key] += v
	}
	return out
}

func sumResource(m map[string]float64) float64 {
	s := 0.0
	for k, v := range m {
		if k != nonResource {
			s += v
		}
	}
	return s
}
