//go:build e2e

package e2e

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// registry reads the test registry's settings (hack/registry.sh up writes them).
func (s *stack) registry(t *testing.T) map[string]string {
	t.Helper()
	path := filepath.Join(s.State, "registry", "registry.env")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("no test registry (%v): run the end-to-end tests with `make test-e2e`, which starts hack/registry.sh", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	return env
}

// isolatedHost returns the index of a build host in its own network namespace
// (hack/hosts.sh, RBN_ISOLATED_HOSTS).
func (s *stack) isolatedHost(t *testing.T) int {
	t.Helper()
	for i := 1; ; i++ {
		if _, err := os.Stat(filepath.Join(s.State, "hosts", fmt.Sprintf("host%d", i), "host.env")); err != nil {
			t.Fatal("no isolated build host: run the end-to-end tests with `make test-e2e` (RBN_ISOLATED_HOSTS)")
		}
		// Not an emulated host of another architecture: the stack leaves
		// those unregistered (hack/test.sh).
		if h := s.Host(t, i); h["NETNS"] != "" && cmp.Or(h["ARCH"], runtime.GOARCH) == runtime.GOARCH {
			return i
		}
	}
}

// pullSecret creates a kubernetes.io/dockerconfigjson Secret for the test registry.
func (s *stack) pullSecret(t *testing.T, ns, name string, reg map[string]string, password string) {
	t.Helper()
	s.Kubectl(t, "-n", ns, "create", "secret", "docker-registry", name,
		"--docker-server="+reg["REGISTRY"], "--docker-username="+reg["USER"], "--docker-password="+password)
}

// imagePod creates a pod with one container of image on node, pulling with
// secret; container is the rest of the container's fields (YAML, indented).
func (s *stack) imagePod(t *testing.T, ns, name, node, image, secret, container string) {
	t.Helper()
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  nodeName: %s
  restartPolicy: Never
  imagePullSecrets: [{name: %s}]
  containers:
    - name: main
      image: %s
%s
`, name, ns, node, secret, image, container))
}

// runImageOnNode runs script in a pod of image on node and waits until it succeeded.
func (s *stack) runImageOnNode(t *testing.T, ns, name, node, image, secret, script string) *corev1.Pod {
	t.Helper()
	s.imagePod(t, ns, name, node, image, secret, fmt.Sprintf("      command: [sh, -c, %q]", script))
	return s.WaitPodPhase(t, ns, name, corev1.PodSucceeded, 3*time.Minute)
}

var relayedRE = regexp.MustCompile(`through rbn-kubelet \((\d+) blobs, (\d+) bytes sent to the host\)`)

// relayed returns what the pod's Pulled event says the relay sent.
func (s *stack) relayed(t *testing.T, ns, pod string) (blobs int, bytes int64, ok bool) {
	t.Helper()
	for _, e := range s.Events(t, ns, "Pod", pod) {
		if e.Reason != "Pulled" {
			continue
		}
		if m := relayedRE.FindStringSubmatch(e.Message); m != nil {
			b, _ := strconv.Atoi(m[1])
			n, _ := strconv.ParseInt(m[2], 10, 64)
			return b, n, true
		}
	}
	return 0, 0, false
}

// A host with no route to the registry runs a pod's image from it, with the
// pod's imagePullSecrets, through rbn-kubelet; the image keeps its name, and
// a second image sharing a layer fetches only what the host lacks.
func TestImagePullThroughKubeletOnIsolatedHost(t *testing.T) {
	s := newStack(t)
	reg := s.registry(t)
	i := s.isolatedHost(t)
	node := s.Host(t, i)["NAME"]
	s.WaitNodeReady(t, node, corev1.ConditionTrue, nil, 90*time.Second)
	if r, _ := s.RBN(t, node); r.Spec.ImagePull != "ThroughKubelet" {
		t.Fatalf("%s: spec.imagePull %q, want ThroughKubelet (hack/register-hosts.sh)", node, r.Spec.ImagePull)
	}
	// A clean start: none of the test images or their layers on the host
	// (the fault tests' proxied name of IMAGE shares its layer).
	_, _ = s.HostPodman(i, "rmi", "--force", "--ignore", reg["IMAGE_EXTRA"], reg["IMAGE"], proxiedImage(reg))

	// The host itself cannot reach the registry, credentials or not.
	if out, err := s.HostPodman(i, "pull", "--creds", reg["USER"]+":"+reg["PASSWORD"], reg["IMAGE"]); err == nil {
		t.Fatalf("the isolated host pulled %s directly:\n%s", reg["IMAGE"], out)
	} else if !strings.Contains(out, "connection refused") && !strings.Contains(out, "unreachable") {
		t.Errorf("direct pull failed, but not for want of a route: %s", out)
	}

	ns := s.Namespace(t)
	s.pullSecret(t, ns, "regcred", reg, reg["PASSWORD"])
	p := s.runImageOnNode(t, ns, "first", node, reg["IMAGE"], "regcred", "cat /etc/rbn-test-image")
	cs := p.Status.ContainerStatuses[0]
	if cs.Image != reg["IMAGE"] || cs.ImageID == "" {
		t.Errorf("container status image %q imageID %q, want image %q", cs.Image, cs.ImageID, reg["IMAGE"])
	}
	firstBlobs, firstBytes, ok := s.relayed(t, ns, "first")
	if !ok || firstBlobs != 2 {
		t.Fatalf("first pull: relayed=%v blobs=%d, want 2 (config and its one layer); events: %v", ok, firstBlobs, s.Events(t, ns, "Pod", "first"))
	}

	// The host's store names the image as the pod did, and nothing else.
	out, err := s.HostPodman(i, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, reg["IMAGE"]) {
		t.Errorf("host images lack %s:\n%s", reg["IMAGE"], out)
	}
	for _, line := range strings.Fields(out) {
		if strings.HasPrefix(line, "127.0.0.1:") && !strings.HasPrefix(line, reg["REGISTRY"]+"/") {
			t.Errorf("the relay's loopback name is left on the host: %s", line)
		}
	}

	// The second image shares the first one's layer: only its config and its
	// own small layer travel.
	s.runImageOnNode(t, ns, "second", node, reg["IMAGE_EXTRA"], "regcred", "cat /etc/rbn-extra /etc/rbn-test-image")
	blobs, bytes, ok := s.relayed(t, ns, "second")
	if !ok || blobs != 2 || bytes*4 > firstBytes {
		t.Errorf("second pull: relayed=%v %d blobs %d bytes, want 2 blobs and far fewer bytes than the first pull's %d", ok, blobs, bytes, firstBytes)
	}
	t.Logf("first pull: %d blobs, %d bytes; second pull (one shared layer): %d blobs, %d bytes", firstBlobs, firstBytes, blobs, bytes)

	if s.InCluster { // rbn-kubelet's own metrics, read from its pods
		h := s.Host(t, i)
		label := fmt.Sprintf("host=%q", h["ADDRESS"]+":"+h["PORT"])
		if n := s.kubeletMetricSum(t, "rbn_image_relay_pulls_total", label, `result="success"`); n < 2 {
			t.Errorf("rbn_image_relay_pulls_total{%s,result=success} = %v, want at least this test's 2 pulls", label, n)
		}
		if n := s.kubeletMetricSum(t, "rbn_image_relay_bytes_total", label); n < float64(firstBytes+bytes) {
			t.Errorf("rbn_image_relay_bytes_total{%s} = %v, want at least this test's %d", label, n, firstBytes+bytes)
		}
	}
}

// Through the relay, a missing image and refused credentials read as they do
// for a direct pull: ImagePullBackOff and a Failed event, with the registry's words.
func TestImagePullThroughKubeletFailures(t *testing.T) {
	s := newStack(t)
	reg := s.registry(t)
	node := s.Host(t, s.isolatedHost(t))["NAME"]
	ns := s.Namespace(t)
	s.pullSecret(t, ns, "wrongcred", reg, "not-the-password")
	s.pullSecret(t, ns, "regcred", reg, reg["PASSWORD"])
	for _, tt := range []struct{ name, image, secret, want string }{
		{"badcreds", reg["IMAGE"], "wrongcred", "authentication required"},
		{"noimage", reg["REGISTRY"] + "/rbn/does-not-exist:1.0", "regcred", "manifest unknown"},
		// The relay fetches for the pod from where the pod says: never the
		// cloud metadata address (egress policy, docs/operations.md).
		{"denied", "169.254.169.254/rbn/x:1", "regcred", "refuses to connect to 169.254.169.254"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.imagePod(t, ns, tt.name, node, tt.image, tt.secret, "      imagePullPolicy: Always")
			// As for a direct pull (TestMissingImageBacksOff): the failed pull is
			// reported as ImagePullBackOff with its error, and a Failed event.
			var msg string
			framework.Eventually(t, "ImagePullBackOff", 90*time.Second, func() (bool, string) {
				p := s.Pod(t, ns, tt.name)
				if len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil {
					w := p.Status.ContainerStatuses[0].State.Waiting
					msg = w.Reason + ": " + w.Message
					return w.Reason == "ImagePullBackOff", msg
				}
				return false, framework.DescribeStatus(p)
			})
			if !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.image) {
				t.Errorf("waiting %q: want the image and %q", msg, tt.want)
			}
			failed := false
			for _, e := range s.Events(t, ns, "Pod", tt.name) {
				failed = failed || (e.Reason == "Failed" && strings.Contains(e.Message, "Failed to pull image") && strings.Contains(e.Message, tt.want))
			}
			if !failed {
				t.Errorf("no Failed event with the registry's error")
			}
		})
	}
}

// A host that pulls directly is not affected by the relay.
func TestImagePullDirectHostUnaffected(t *testing.T) {
	s := newStack(t)
	reg := s.registry(t)
	node := s.Host(t, 1)["NAME"]
	if s.Host(t, 1)["NETNS"] != "" {
		t.Skip("host 1 is isolated")
	}
	_, _ = s.HostPodman(1, "rmi", "--force", "--ignore", reg["IMAGE_EXTRA"])
	ns := s.Namespace(t)
	s.pullSecret(t, ns, "regcred", reg, reg["PASSWORD"])
	s.runImageOnNode(t, ns, "direct", node, reg["IMAGE_EXTRA"], "regcred", "cat /etc/rbn-extra")
	if _, _, relayed := s.relayed(t, ns, "direct"); relayed {
		t.Errorf("a Direct host's image came through rbn-kubelet")
	}
	pulled := false
	for _, e := range s.Events(t, ns, "Pod", "direct") {
		pulled = pulled || (e.Reason == "Pulled" && strings.Contains(e.Message, "Successfully pulled"))
	}
	if !pulled {
		t.Errorf("no Pulled event")
	}
}
