package framework

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ScrapeMetrics reads http://ip:port/metrics, the plain-HTTP metrics of
// rbn's pods.
func ScrapeMetrics(ip string, port int) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	return string(b), err
}

// MetricSum sums the samples of metric name in the text exposition format
// whose label set contains every one of labels (`host="10.0.0.1:22"`);
// false when there is none.
func MetricSum(text, name string, labels ...string) (float64, bool, error) {
	var sum float64
	found := false
	err := metricSamples(text, name, labels, func(v float64) bool {
		sum += v
		found = true
		return true
	})
	return sum, found && err == nil, err
}

// MetricSample is the first sample of metric name whose label set contains
// every one of labels; false when there is none.
func MetricSample(text, name string, labels ...string) (float64, bool, error) {
	var first float64
	found := false
	err := metricSamples(text, name, labels, func(v float64) bool {
		first, found = v, true
		return false
	})
	return first, found && err == nil, err
}

// MetricCount counts the samples of metric name in the text exposition
// format whose label set contains every one of labels.
func MetricCount(text, name string, labels ...string) (int, error) {
	n := 0
	err := metricSamples(text, name, labels, func(float64) bool {
		n++
		return true
	})
	return n, err
}

// metricSamples calls each, in order, with the value of every sample of
// metric name whose label set contains every one of labels, until each
// returns false.
func metricSamples(text, name string, labels []string, each func(float64) bool) error {
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		metric, _, _ := strings.Cut(line, "{")
		metric, _, _ = strings.Cut(metric, " ")
		if metric != name {
			continue
		}
		rest, set := line[len(metric):], ""
		if j := strings.LastIndex(line, "}"); j >= 0 {
			rest, set = line[j+1:], line[len(metric):j+1]
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(set, l)
		}
		fields := strings.Fields(rest)
		if !match || len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return fmt.Errorf("%s: %w", line, err)
		}
		if !each(v) {
			return nil
		}
	}
	return nil
}
