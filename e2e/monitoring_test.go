//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// prometheusRule is what the test reads of manifests/monitoring/rules.yaml:
// its spec is a Prometheus rule file.
type prometheusRule struct {
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Record string `json:"record,omitempty"`
				Alert  string `json:"alert,omitempty"`
				Expr   string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// dashboard is what the test reads of manifests/monitoring/dashboard.json.
type dashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// The monitoring rbn ships (manifests/monitoring) works against a real
// Prometheus scraping the stack as kube-prometheus does (hack/monitoring.sh:
// every Node's kubelet endpoints at <InternalIP>:<kubelet port>, rbn's pods,
// kube-state-metrics): the rules load, every build node's four kubelet
// endpoints are scraped up, every dashboard query returns series with live
// data, and every alert's expression holds, and the alert fires or pends
// (for its `for`), under the fault it is about: a node idle while a pod
// pends, a missing S3 object, a host's disk short, its SSH cut four times,
// a host gone.
func TestMonitoring(t *testing.T) {
	s := newInClusterStack(t)
	url, err := framework.Getenv("RBN_PROMETHEUS_URL")
	if err != nil {
		t.Fatalf("%v: run the end-to-end tests with `make test-e2e`, which runs hack/monitoring.sh up", err)
	}
	rulesDir, err := framework.Getenv("RBN_PROMETHEUS_RULES")
	if err != nil {
		t.Fatal(err)
	}
	client, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	prom := promv1.NewAPI(client)
	ctx := context.Background()

	// The rules as shipped, loaded into the stack's Prometheus.
	shipped := []byte(framework.ReadFile(t, filepath.Join(s.Root, "manifests", "monitoring", "rules.yaml")))
	var rule prometheusRule
	if err := yaml.Unmarshal(shipped, &rule); err != nil {
		t.Fatal(err)
	}
	// The spec whole (for, labels, annotations), as the operator writes it.
	var whole struct {
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(shipped, &whole); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(whole.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "rbn.yaml"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+"/-/reload", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reload Prometheus: %v %v", resp, err)
	}
	resp.Body.Close()
	var alerts, records []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
			} else {
				records = append(records, r.Record)
			}
		}
	}
	framework.Eventually(t, "rbn's rules loaded and healthy", time.Minute, func() (bool, string) {
		got, err := prom.Rules(ctx, nil)
		if err != nil {
			return false, err.Error()
		}
		var loaded []string
		for _, g := range got.Groups {
			for _, r := range g.Rules {
				switch r := r.(type) {
				case promv1.AlertingRule:
					if r.Health != promv1.RuleHealthGood && r.Health != promv1.RuleHealthUnknown {
						return false, fmt.Sprintf("alert %s: %s %s", r.Name, r.Health, r.LastError)
					}
					loaded = append(loaded, r.Name)
				case promv1.RecordingRule:
					if r.Health != promv1.RuleHealthGood && r.Health != promv1.RuleHealthUnknown {
						return false, fmt.Sprintf("record %s: %s %s", r.Name, r.Health, r.LastError)
					}
					loaded = append(loaded, r.Name)
				}
			}
		}
		want := append(slices.Clone(records), alerts...)
		slices.Sort(want)
		slices.Sort(loaded)
		return slices.Equal(loaded, want), fmt.Sprintf("loaded %v, want %v", loaded, want)
	})

	// Every build node is scraped at its four kubelet endpoints, as any node.
	nodes := s.buildNodes(t)
	framework.Eventually(t, "every build node's kubelet endpoints scraped up", 2*time.Minute, func() (bool, string) {
		targets, err := prom.Targets(ctx)
		if err != nil {
			return false, err.Error()
		}
		up := map[string]int{}
		var down []string
		for _, tg := range targets.Active {
			if tg.Labels["job"] != "kubelet" {
				continue
			}
			node := string(tg.Labels["node"])
			if tg.Health == promv1.HealthGood {
				up[node]++
			} else {
				down = append(down, fmt.Sprintf("%s%s: %s %s", node, tg.Labels["metrics_path"], tg.Health, tg.LastError))
			}
		}
		for _, n := range nodes {
			if up[n] != 4 {
				return false, fmt.Sprintf("%s: %d of 4 endpoints up; down: %v", n, up[n], down)
			}
		}
		return true, ""
	})

	// Live data for the panels: a job running on a build node with
	// requests, a pod that pends (no node has its architecture), and an S3
	// transfer.
	ns := s.Namespace(t)
	running := framework.JobPod(ns, "running", nodes[0], nil, []string{"sleep", "3600"})
	running.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: "amd64"}
	running.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")}
	pending := framework.JobPod(ns, "pending", "", nil, []string{"true"})
	pending.Spec.NodeSelector = map[string]string{corev1.LabelArchStable: "s390x"}
	for _, p := range []*corev1.Pod{running, pending} {
		if _, err := s.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	s.WaitPodPhase(t, ns, "running", corev1.PodRunning, 2*time.Minute)
	srv := newS3Server(t)
	bucket := srv.bucket(t)
	srv.put(t, bucket, "in/recipe", []byte("recipe"))
	s.Apply(t, srv.secretManifest(ns, "s3", srv.Endpoint, srv.SecretKey))
	transfer := func(name, key string) string {
		return transferPod(ns, name, inputTransfers("s3", bucket, key), "cat /work/recipe")
	}
	s.Apply(t, transfer("fetched", "in/recipe"))
	s.WaitPodPhase(t, ns, "fetched", corev1.PodSucceeded, 2*time.Minute)

	query := func(expr string) (int, string) {
		v, warnings, err := prom.Query(ctx, expr, time.Now())
		if err != nil {
			return 0, err.Error()
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return 0, fmt.Sprintf("a %s, not a vector", v.Type())
		}
		return len(vec), fmt.Sprintf("%d series %v", len(vec), warnings)
	}
	var board dashboard
	if err := yaml.Unmarshal([]byte(framework.ReadFile(t, filepath.Join(s.Root, "manifests", "monitoring", "dashboard.json"))), &board); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range board.Panels {
		for _, target := range p.Targets {
			n++
			framework.Eventually(t, fmt.Sprintf("panel %q returns series: %s", p.Title, target.Expr), 3*time.Minute, func() (bool, string) {
				got, why := query(target.Expr)
				return got > 0, why
			})
		}
	}
	t.Logf("%d dashboard queries of %d panels return series", n, len(board.Panels))

	// The stats endpoints Prometheus just scraped read the hosts' cgroup
	// files (hack/hosts.sh's podman: cgroupfs on hybrid cgroups), not
	// podman's stats call (docs/operations.md, "The kubelet API").
	framework.Eventually(t, "the build hosts' container figures read from their cgroup files", time.Minute, func() (bool, string) {
		got, why := query(`sum by (host) (rbn_host_commands_total{operation="cgroup_stats",result="success"}) > 0`)
		return got > 0, why
	})
	if got, why := query(`sum by (host) (rbn_podman_requests_total{operation="container_stats"}) > 0`); got != 0 {
		t.Errorf("podman's stats call was made on %d hosts whose cgroup files can be read: %s", got, why)
	}

	// Each alert under its fault.
	exprOf := map[string]string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				exprOf[r.Alert] = r.Expr
			}
		}
	}
	fires := func(alert string, timeout time.Duration) {
		t.Helper()
		framework.Eventually(t, alert+"'s expression holds and the alert is active", timeout, func() (bool, string) {
			if got, why := query(exprOf[alert]); got == 0 {
				return false, "expression: " + why
			}
			active, err := prom.Alerts(ctx)
			if err != nil {
				return false, err.Error()
			}
			for _, a := range active.Alerts {
				if string(a.Labels["alertname"]) == alert {
					t.Logf("%s %s: %v", alert, a.State, a.Labels)
					return true, ""
				}
			}
			return false, "not among the active alerts"
		})
	}
	// A node idle while pods pend: the pending s390x pod, and a build node
	// that runs nothing.
	fires("RBNBuildNodeIdleWhileJobsPend", 2*time.Minute)
	// S3 transfers that fail.
	s.Apply(t, transfer("missing", "in/absent"))
	fires("RBNS3TransferFailures", 3*time.Minute)
	last := len(nodes) - 1
	// A host short of disk: its Node's DiskPressure condition (the
	// threshold raised to 100% available; every image of the host pinned,
	// so that rbn's image collection under pressure removes none that the
	// tests after this one use, as in TestDiskPressureEviction). Neither
	// the node running the job above nor the one cut below.
	if last < 2 {
		t.Fatalf("need 3 build nodes, have %v (run the stack with NODES=4)", nodes)
	}
	full := nodes[1]
	policy, err := json.Marshal(map[string]any{"spec": map[string]any{
		"diskPressure": map[string]any{"availableBelow": "100%"},
		"imageGC":      map[string]any{"pinned": s.hostImages(t, s.HostIndex(t, full))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.waitDiskPressure(t, full, false) }) // after the restore: cleanups run last first
	s.patchNodeSpec(t, full, string(policy), registeredDiskPolicy)
	s.waitDiskPressure(t, full, true)
	fires("RBNBuildNodeDiskPressure", 3*time.Minute)
	// A host's SSH flapping: cut 4 times.
	hostIndex := s.HostIndex(t, nodes[last])
	h := s.Host(t, hostIndex)
	sshUp := func(want int) string {
		return fmt.Sprintf(`min(rbn_ssh_connection_up{host=%q}) == %d`, h["ADDRESS"]+":"+h["PORT"], want)
	}
	for range 4 {
		restore := s.cutSSH(t, hostIndex)
		framework.Eventually(t, "the SSH connection to "+nodes[last]+" lost", time.Minute, func() (bool, string) {
			got, why := query(sshUp(0))
			return got > 0, why
		})
		restore()
		framework.Eventually(t, "the SSH connection to "+nodes[last]+" back", time.Minute, func() (bool, string) {
			got, why := query(sshUp(1))
			return got > 0, why
		})
	}
	fires("RBNSSHFlapping", 2*time.Minute)
	// A host gone: its node NotReady (the alert pends for its 2 minutes).
	s.cutSSH(t, hostIndex)
	fires("RBNBuildNodeNotReady", 3*time.Minute)
}
