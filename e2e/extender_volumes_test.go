//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/scheduler/server"
)

// annSelectedNode is where the scheduler names a claim's node for its
// provisioner (WaitForFirstConsumer).
const annSelectedNode = "volume.kubernetes.io/selected-node"

// TestExtenderVolumeSpace: rbn-extender keeps a pod whose unbound claim of
// rbn.dev/host-local does not fit in a host's volume space (the host facts'
// volumeFreeBytes, set here with the override annotation to 1 MiB) off that
// host, so that the provisioner is never asked there and the claim does not
// go round the refuse-and-reschedule loop.
//
//   - one host has room: the pod runs there at the first attempt (its claim
//     has no ProvisioningFailed event), and rbn-extender's answer for the
//     others, asked as kube-scheduler asks it, gives the reason;
//   - no host has room: the pod stays Pending with a FailedScheduling event
//     carrying the reason, its claim unprovisioned; given room on one host
//     it runs there.
func TestExtenderVolumeSpace(t *testing.T) {
	s := newStack(t)
	nodes := s.volumeNodes(t)
	const (
		size   = "32Mi"
		reason = "rbn: build host has 1.0MiB free for volumes, the pod's unbound claims of rbn.dev/host-local ask for 32.0MiB"
	)
	// lowVolumeSpace makes nodes' volume space 1 MiB, until the test ends.
	lowVolumeSpace := func(t *testing.T, low []string) {
		t.Helper()
		for _, n := range low {
			s.override(t, n, `{"volumeFreeBytes": 1048576}`)
		}
		for _, n := range low {
			s.waitExtender(t, n, "1MiB free for volumes", func(d server.NodeDebug) bool {
				return d.Facts.VolumeFreeBytes != nil && *d.Facts.VolumeFreeBytes == 1<<20
			})
		}
	}

	t.Run("one host has room", func(t *testing.T) {
		free, low := nodes[0], nodes[1:]
		lowVolumeSpace(t, low)
		// The host left: its space unknown (rbn-kubelet does not say) or enough.
		s.waitExtender(t, free, "room for a 32Mi volume", func(d server.NodeDebug) bool {
			return d.Facts.VolumeFreeBytes == nil || *d.Facts.VolumeFreeBytes >= 32<<20
		})
		ns := s.Namespace(t)
		s.claim(t, ns, "work", ptr.To(hostLocalClass), size)
		pod := claimPod(ns, "job", "work", "echo ok >/data/out")
		// Asked as kube-scheduler will ask it: this also waits until
		// rbn-extender's cache has the claim, which a pod created at once
		// might otherwise beat (the claim would then count nothing).
		s.waitExtenderFilter(t, pod, nodes, "only "+free+" passes, the others for want of volume space", func(r extenderv1.ExtenderFilterResult) bool {
			if r.NodeNames == nil || !slices.Equal(*r.NodeNames, []string{free}) {
				return false
			}
			for _, n := range low {
				if r.FailedAndUnresolvableNodes[n] != reason {
					return false
				}
			}
			return true
		})

		skips := s.extenderSkips(t)
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := s.WaitPodPhase(t, ns, "job", corev1.PodSucceeded, 2*time.Minute)
		if n := s.extenderSkips(t) - skips; n > 0 {
			t.Errorf("kube-scheduler skipped rbn-extender %d time(s) (see its log)", n)
		}
		if p.Spec.NodeName != free {
			t.Errorf("pod ran on %s, want %s, the one host with room for its volume", p.Spec.NodeName, free)
		}
		if pv := s.boundVolume(t, ns, "work"); pv.Labels[rbnv1.LabelNode] != free {
			t.Errorf("volume %s made for node %s, want %s", pv.Name, pv.Labels[rbnv1.LabelNode], free)
		}
		if failed := s.provisioningFailures(t, ns, "work"); len(failed) > 0 {
			t.Errorf("claim work was refused on the way (a reschedule loop the extender should have spared): %v", failed)
		}
	})

	t.Run("no host has room", func(t *testing.T) {
		lowVolumeSpace(t, nodes)
		ns := s.Namespace(t)
		s.claim(t, ns, "work", ptr.To(hostLocalClass), size)
		pod := claimPod(ns, "job", "work", "echo ok >/data/out")
		s.waitExtenderFilter(t, pod, nodes, "every host filtered for want of volume space", func(r extenderv1.ExtenderFilterResult) bool {
			if r.NodeNames == nil || len(*r.NodeNames) != 0 {
				return false
			}
			for _, n := range nodes {
				if r.FailedAndUnresolvableNodes[n] != reason {
					return false
				}
			}
			return true
		})
		if _, err := s.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Logf("FailedScheduling: %s", s.waitFailedScheduling(t, ns, "job", "free for volumes"))
		if p := s.Pod(t, ns, "job"); p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
			t.Errorf("pod job: %s on %q, want Pending and unscheduled", p.Status.Phase, p.Spec.NodeName)
		}
		c, err := s.Client.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), "work", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Spec.VolumeName != "" || c.Annotations[annSelectedNode] != "" {
			t.Errorf("claim work: volume %q, selected node %q: the provisioner was asked", c.Spec.VolumeName, c.Annotations[annSelectedNode])
		}
		if failed := s.provisioningFailures(t, ns, "work"); len(failed) > 0 {
			t.Errorf("claim work was refused by a host it was never meant for: %v", failed)
		}

		// Room on one host: kube-scheduler tries again on the Node's
		// update, and the pod runs there.
		room := nodes[len(nodes)-1]
		s.override(t, room, `{"volumeFreeBytes": null}`)
		s.waitExtender(t, room, "volume space unknown", func(d server.NodeDebug) bool { return d.Facts.VolumeFreeBytes == nil })
		if p := s.WaitPodPhase(t, ns, "job", corev1.PodSucceeded, 2*time.Minute); p.Spec.NodeName != room {
			t.Errorf("pod ran on %s, want %s, the one host given room", p.Spec.NodeName, room)
		}
		if failed := s.provisioningFailures(t, ns, "work"); len(failed) > 0 {
			t.Errorf("claim work was refused on the way: %v", failed)
		}
	})
}

// volumeNodes returns the Nodes of this machine's build hosts (those a
// claimPod may go to), Ready, in host order; at least 2.
func (s *stack) volumeNodes(t *testing.T) []string {
	t.Helper()
	hosts, err := s.HostsOfArch(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, h := range hosts {
		if _, ok := s.Node(t, h.Name); !ok {
			t.Logf("build host %d (%s) has no Node: left out", h.Index, h.Name)
			continue
		}
		nodes = append(nodes, h.Name)
	}
	if len(nodes) < 2 {
		t.Fatalf("need at least 2 registered build hosts of %s, have %v (run the stack with NODES=4)", runtime.GOARCH, nodes)
	}
	// Every node a claimPod may go to must be one of them, or the test's
	// overrides would not decide where the pod goes.
	var placement corev1.PodSpec
	framework.RemoteNodePlacement(&placement)
	sel := labels.SelectorFromSet(placement.NodeSelector).String()
	list, err := s.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list.Items {
		if !slices.Contains(nodes, n.Name) {
			t.Fatalf("node %s matches the pods' node selector %s but is no local build host of %s (%v)", n.Name, sel, runtime.GOARCH, nodes)
		}
	}
	for _, n := range nodes {
		s.WaitNodeReady(t, n, corev1.ConditionTrue, nil, 90*time.Second)
	}
	return nodes
}

// extenderFilter asks rbn-extender which of nodes pod may go to, as
// kube-scheduler does (POST /filter, nodeCacheCapable).
func (s *stack) extenderFilter(t *testing.T, pod *corev1.Pod, nodes []string) (extenderv1.ExtenderFilterResult, error) {
	t.Helper()
	var res extenderv1.ExtenderFilterResult
	url, err := s.ExtenderURL()
	if err != nil {
		t.Fatal(err)
	}
	client, err := s.ExtenderClient()
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(extenderv1.ExtenderArgs{Pod: pod, NodeNames: &nodes})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(url+"/filter", "application/json", bytes.NewReader(body))
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("POST /filter: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("POST /filter: %w: %s", err, b)
	}
	return res, nil
}

// waitExtenderFilter waits until rbn-extender's filter answer for pod over
// nodes satisfies cond.
func (s *stack) waitExtenderFilter(t *testing.T, pod *corev1.Pod, nodes []string, what string, cond func(extenderv1.ExtenderFilterResult) bool) {
	t.Helper()
	framework.Eventually(t, "rbn-extender's filter: "+what, 30*time.Second, func() (bool, string) {
		res, err := s.extenderFilter(t, pod, nodes)
		if err != nil {
			return false, err.Error()
		}
		b, _ := json.Marshal(res)
		return cond(res), string(b)
	})
}

// provisioningFailures are the messages of the claim's ProvisioningFailed
// events.
func (s *stack) provisioningFailures(t *testing.T, ns, claim string) []string {
	t.Helper()
	var msgs []string
	for _, e := range s.Events(t, ns, "PersistentVolumeClaim", claim) {
		if e.Reason == "ProvisioningFailed" {
			msgs = append(msgs, strings.TrimSpace(e.Message))
		}
	}
	return msgs
}
