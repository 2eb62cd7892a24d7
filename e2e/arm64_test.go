//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// TestArm64Host: aarch64 jobs on an aarch64 build host (issue #19), with the
// emulated arm64 host hack/test.sh starts beside the x86 ones
// (RBN_ARM64_HOSTS, hack/hosts.sh) and leaves unregistered. The test
// registers its RemoteBuildNode, so no other test ever sees that slow node,
// and deletes it at the end. Its subtests share the node:
//   - node: a Ready node labelled kubernetes.io/arch=arm64, nodeInfo and the
//     RemoteBuildNode's status saying arm64, as the host's podman does;
//   - jobs: an image-create-shaped Job (batch/v1, restartPolicy Never,
//     nodeSelector kubernetes.io/arch) per architecture lands on a node of
//     that architecture only, and `uname -m` logs aarch64 / x86_64;
//   - multiarch: rbn/multiarch:1 (an OCI index, hack/registry.sh multiarch)
//     runs its arm64 variant on the arm64 host and its amd64 one on x86 hosts,
//     pulled directly and through rbn-kubelet's relay (the isolated host);
//   - amd64only: rbn/amd64only:1 never runs on the arm64 host (its amd64
//     binaries would: qemu-user is not involved for x86 code on this machine),
//     the pull fails with ErrImagePull/ImagePullBackOff naming arm64;
//   - streams: kubectl logs -f, attach, exec, port-forward and top on the
//     arm64 node;
//   - burst: 8 pods with arm64 and amd64 node selectors created at once land
//     on nodes of their architecture (kube-scheduler with rbn-extender) and run;
//   - relay: the arm64 node switched to imagePull: ThroughKubelet pulls
//     rbn/multiarch:1's arm64 variant through rbn-kubelet, and refuses
//     rbn/amd64only:1 as a direct pull does.
//
// The emulated host is slow (a container starts in 10-20 s, a podman call
// takes 5-25 s): the pods start concurrently, created at the start, and the
// waits for them allow minutes. Expected duration: 6-10 minutes.
func TestArm64Host(t *testing.T) {
	s := newStack(t)
	if runtime.GOARCH != "amd64" {
		t.Skipf("the stack's ordinary hosts are %s: this test expects x86_64 ones beside the emulated aarch64 host", runtime.GOARCH)
	}
	arms, err := s.HostsOfArch("arm64")
	if err != nil {
		t.Fatal(err)
	}
	if len(arms) == 0 {
		t.Skip("no emulated arm64 build host: `make test-e2e` starts one unless E2E_ARM64=0 (hack/test.sh, RBN_ARM64_HOSTS)")
	}
	arm := arms[0]
	reg := s.registry(t)
	if reg["IMAGE_MULTIARCH"] == "" || reg["IMAGE_AMD64ONLY"] == "" {
		t.Fatal("registry.env has no IMAGE_MULTIARCH/IMAGE_AMD64ONLY: hack/registry.sh up pushes them when RBN_ARM64_HOSTS is set (or run hack/registry.sh multiarch)")
	}
	x86 := s.directX86Host(t)
	iso := s.Host(t, s.isolatedHost(t))["NAME"]

	// Registered before the namespace is made: the namespace's cleanup, and
	// with it the pods', runs before the node's.
	s.registerArm64(t, arm)
	ns := s.Namespace(t)
	s.pullSecret(t, ns, "regcred", reg, reg["PASSWORD"])
	// The first facts take several emulated podman calls.
	s.WaitNodeReady(t, arm.Name, corev1.ConditionTrue, nil, 5*time.Minute)
	skipsBefore := s.extenderSkips(t)

	// Every pod of the subtests below at once (the relay's excepted: it
	// needs the node's spec changed): the arm64 host starts them side by side.
	const (
		burstArm64 = 3
		burstSize  = 8
	)
	pods := []*corev1.Pod{
		imageJobPod(ns, "multiarch-arm64", arm.Name, reg["IMAGE_MULTIARCH"], false),
		imageJobPod(ns, "multiarch-amd64", x86, reg["IMAGE_MULTIARCH"], false),
		imageJobPod(ns, "multiarch-relay-amd64", iso, reg["IMAGE_MULTIARCH"], true),
		imageJobPod(ns, "amd64only-arm64", arm.Name, reg["IMAGE_AMD64ONLY"], true),
		streamsPod(ns, arm.Name),
	}
	burstArch := map[string]string{}
	for i := range burstSize {
		name, arch := fmt.Sprintf("burst-%d", i), "amd64"
		if i < burstArm64 {
			arch = "arm64"
		}
		burstArch[name] = arch
		p := framework.JobPod(ns, name, "", map[string]string{"app": "arm64-burst"}, []string{"uname", "-m"})
		framework.ArchPlacement(&p.Spec, arch)
		pods = append(pods, p)
	}
	// S3 inputs and outputs, relayed through rbn-kubelet like an x86 host's.
	srv := newS3Server(t)
	bucket := srv.bucket(t)
	srv.put(t, bucket, "recipes/arm.tar.gz", tarGz(t, map[string]string{"config.kiwi": "<image name='arm'/>"}))
	s.Apply(t, srv.secretManifest(ns, "s3", srv.Endpoint, srv.SecretKey))
	pods = append(pods, arm64S3Pod(ns, arm.Name, reg["IMAGE_MULTIARCH"], bucket))
	s.createAtOnce(t, ns, pods)
	for _, arch := range []string{"arm64", "amd64"} {
		if _, err := s.Client.BatchV1().Jobs(ns).Create(context.Background(), unameJob(ns, "uname-"+arch, arch), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("node", func(t *testing.T) {
		n, ok := s.Node(t, arm.Name)
		if !ok {
			t.Fatalf("node %s missing", arm.Name)
		}
		if got := n.Labels[corev1.LabelArchStable]; got != "arm64" {
			t.Errorf("arch label %q, want arm64", got)
		}
		if got := n.Labels[corev1.LabelOSStable]; got != "linux" {
			t.Errorf("os label %q, want linux", got)
		}
		if got := n.Status.NodeInfo.Architecture; got != "arm64" {
			t.Errorf("nodeInfo.architecture %q, want arm64", got)
		}
		if n.Labels["rbn.dev/local-test-host"] != "true" {
			t.Errorf("operator label missing: %v", n.Labels)
		}
		r, ok := s.RBN(t, arm.Name)
		if !ok {
			t.Fatalf("RemoteBuildNode %s absent", arm.Name)
		}
		if r.Status.Phase != rbnv1.PhaseReady || r.Status.Host == nil || r.Status.Host.Architecture != "arm64" {
			t.Errorf("RemoteBuildNode status %+v, want Ready with host architecture arm64", r.Status)
		}
		// What the host's own podman reports, asked independently of rbn
		// (its last line: the emulated podman logs a harmless error about
		// the machine's x86 /proc/cpuinfo before it). `podman version`, not
		// `podman info`: info takes every container's lock and the store's,
		// and with the pods above starting side by side on the emulated
		// host it once waited past HostPodman's 2 minutes in a clean-clone
		// run.
		out := strings.TrimSpace(s.MustHostPodman(t, arm.Index, "version", "--format", "{{.Client.OsArch}}"))
		if lines := strings.Split(out, "\n"); lines[len(lines)-1] != "linux/arm64" {
			t.Errorf("the host's podman reports %q, want linux/arm64", out)
		}
		// What an operator sees (docs/operations.md): the x86 nodes amd64, this one arm64.
		out = s.Kubectl(t, "get", "nodes", "-l", rbnv1.LabelRemoteBuildNode+"=true", "-L", corev1.LabelArchStable, "--no-headers")
		for l := range strings.Lines(out) {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			want := "amd64"
			if f[0] == arm.Name {
				want = "arm64"
			}
			if f[len(f)-1] != want {
				t.Errorf("kubectl get nodes -L %s: %q, want %s last", corev1.LabelArchStable, l, want)
			}
		}
		t.Logf("kubectl get nodes -L %s:\n%s", corev1.LabelArchStable, out)
	})

	t.Run("jobs", func(t *testing.T) {
		for arch, uname := range map[string]string{"arm64": "aarch64", "amd64": "x86_64"} {
			name := "uname-" + arch
			p := s.waitJobPod(t, ns, name, 10*time.Minute)
			node, ok := s.Node(t, p.Spec.NodeName)
			if !ok || node.Labels[corev1.LabelArchStable] != arch || (arch == "arm64") != (p.Spec.NodeName == arm.Name) {
				t.Errorf("job %s ran on %s, want the %s node", name, p.Spec.NodeName, arch)
			}
			if got := s.Kubectl(t, "-n", ns, "logs", "job/"+name); got != uname+"\n" {
				t.Errorf("job %s on %s logged %q, want %q", name, p.Spec.NodeName, got, uname+"\n")
			}
		}
	})

	t.Run("multiarch", func(t *testing.T) {
		for _, tt := range []struct{ pod, arch string }{
			{"multiarch-arm64", "arm64"}, {"multiarch-amd64", "amd64"}, {"multiarch-relay-amd64", "amd64"},
		} {
			s.WaitPodPhase(t, ns, tt.pod, corev1.PodSucceeded, 10*time.Minute)
			if got := s.Kubectl(t, "-n", ns, "logs", tt.pod); got != tt.arch+"\n" {
				t.Errorf("%s: /arch of %s is %q, want the %s variant", tt.pod, reg["IMAGE_MULTIARCH"], got, tt.arch)
			}
		}
		if _, _, ok := s.relayed(t, ns, "multiarch-relay-amd64"); !ok {
			t.Errorf("multiarch-relay-amd64 (on the isolated %s) was not pulled through rbn-kubelet: %v", iso, s.Events(t, ns, "Pod", "multiarch-relay-amd64"))
		}
	})

	t.Run("amd64only", func(t *testing.T) {
		s.waitNoPlatform(t, ns, "amd64only-arm64", reg["IMAGE_AMD64ONLY"])
	})

	t.Run("streams", func(t *testing.T) {
		s.arm64Streams(t, ns, "shell")
	})

	t.Run("burst", func(t *testing.T) {
		framework.Eventually(t, fmt.Sprintf("the %d burst pods bound", burstSize), 3*time.Minute, func() (bool, string) {
			list, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=arm64-burst"})
			if err != nil {
				return false, err.Error()
			}
			pending := slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.Spec.NodeName != "" })
			return len(list.Items) == burstSize && len(pending) == 0, fmt.Sprintf("%d pods, unbound: %s", len(list.Items), podsBrief(pending))
		})
		perArch := map[string][]string{}
		for name, arch := range burstArch {
			p := s.WaitPodPhase(t, ns, name, corev1.PodSucceeded, 10*time.Minute)
			node, ok := s.Node(t, p.Spec.NodeName)
			if !ok || node.Labels[corev1.LabelArchStable] != arch {
				t.Errorf("%s (nodeSelector %s) placed on %s", name, arch, p.Spec.NodeName)
			}
			want := map[string]string{"arm64": "aarch64\n", "amd64": "x86_64\n"}[arch]
			if got := s.Kubectl(t, "-n", ns, "logs", name); got != want {
				t.Errorf("%s on %s: uname -m %q, want %q", name, p.Spec.NodeName, got, want)
			}
			perArch[arch] = append(perArch[arch], p.Spec.NodeName)
		}
		t.Logf("burst placements: %v", perArch)
		if skips := s.extenderSkips(t) - skipsBefore; skips > 0 {
			t.Errorf("kube-scheduler went on without rbn-extender %d time(s) during the test", skips)
		}
	})

	t.Run("s3", func(t *testing.T) {
		s.WaitPodPhase(t, ns, "s3-arm64", corev1.PodSucceeded, 10*time.Minute)
		if got := string(srv.get(t, bucket, "results/arch")); got != "aarch64 <image name='arm'/>\n" {
			t.Errorf("results/arch holds %q, want the arm64 host's uname and the recipe", got)
		}
		events := s.Events(t, ns, "Pod", "s3-arm64")
		for _, want := range [][2]string{
			{"Downloaded", "s3://" + bucket + "/recipes/arm.tar.gz"}, {"Uploaded", "s3://" + bucket + "/results/arch"},
		} {
			if !hasEvent(events, want[0], want[1]) {
				t.Errorf("no %s event for %s", want[0], want[1])
			}
		}
	})

	t.Run("relay", func(t *testing.T) {
		s.arm64Relay(t, ns, arm, reg)
	})
}

// arm64S3Pod is an image-create-shaped pod on node: its recipe comes from
// S3 (unpacked into its work volume) and its result goes back there, both
// through rbn-kubelet; it writes the host's `uname -m` and the recipe.
func arm64S3Pod(ns, node, image, bucket string) *corev1.Pod {
	p := framework.JobPod(ns, "s3-arm64", "", nil, []string{"sh", "-c",
		`set -e; mkdir -p /work/out; ` +
			`echo "$(uname -m) $(cat /work/recipe/config.kiwi)" > /work/out/arch`})
	onNodeName(p, node)
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	p.Spec.Containers[0].Image = image
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	p.Annotations = map[string]string{"rbn.dev/transfers": fmt.Sprintf(`{"apiVersion": "rbn.dev/v1alpha1", "kind": "Transfers", "secretName": "s3",`+
		` "inputs": [{"bucket": %[1]q, "key": "recipes/arm.tar.gz", "volume": "work", "path": "recipe", "unpack": "tar.gz"}],`+
		` "outputs": [{"volume": "work", "path": "out/arch", "bucket": %[1]q, "key": "results/arch"}]}`, bucket)}
	return p
}

// directX86Host returns the name of an ordinary host that pulls directly.
func (s *stack) directX86Host(t *testing.T) string {
	t.Helper()
	hosts, err := s.BuildHosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if s.Host(t, h.Index)["NETNS"] == "" {
			return h.Name
		}
	}
	t.Fatalf("no build host of this machine's architecture pulls directly: %v", hosts)
	return ""
}

// registerArm64 registers host h as hack/register-hosts.sh would, and at the
// end deletes it and waits until its Node is gone, so that the tests after
// this one never see it.
func (s *stack) registerArm64(t *testing.T, h framework.BuildHost) {
	t.Helper()
	// Registered before registerExtra's cleanup, so run after it.
	t.Cleanup(func() {
		framework.Eventually(t, "node "+h.Name+" deleted with its RemoteBuildNode", 5*time.Minute, func() (bool, string) {
			_, err := s.Client.CoreV1().Nodes().Get(context.Background(), h.Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	})
	s.registerExtra(t, h.Name, h.Index, framework.ReadFile(t, h.Known), fmt.Sprintf(`  user: %s
  labels: {rbn.dev/local-test-host: "true"}
  imagePull: Direct`, h.User))
}

// imageJobPod is a job-shaped pod on node running `cat /arch` in image, pulled
// with the regcred Secret; always pulling when pullAlways.
func imageJobPod(ns, name, node, image string, pullAlways bool) *corev1.Pod {
	p := framework.JobPod(ns, name, "", nil, []string{"cat", "/arch"})
	onNodeName(p, node)
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
	p.Spec.Containers[0].Image = image
	if pullAlways {
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullAlways
	}
	return p
}

// onNodeName puts p on node past the scheduler, as a pod naming its node
// does, without the node selector of this machine's architecture
// (RemoteNodePlacement) that the arm64 node would not match.
func onNodeName(p *corev1.Pod, node string) {
	p.Spec.NodeName = node
	p.Spec.NodeSelector = nil
}

// streamsPod runs, on node, an echo server on port 8080 and a shell loop
// echoing its stdin; it logs "ready" once the server listens (port 8080 is
// 1F90 in /proc/net/tcp*).
func streamsPod(ns, node string) *corev1.Pod {
	p := framework.JobPod(ns, "shell", "", nil, []string{"sh", "-c",
		`nc -ll -p 8080 -e cat & until cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':1F90 '; do sleep 1; done; ` +
			`echo ready; while read line; do echo "got:$line"; done`})
	onNodeName(p, node)
	p.Spec.Containers[0].Stdin = true
	p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
	return p
}

// unameJob is an image-create-shaped Job: one try, restartPolicy Never, on a
// remote build node of arch.
func unameJob(ns, name, arch string) *batchv1.Job {
	spec := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Containers:                    []corev1.Container{{Name: "build", Image: framework.TestImage, Command: []string{"uname", "-m"}}},
	}
	framework.ArchPlacement(&spec, arch)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template:     corev1.PodTemplateSpec{Spec: spec},
		},
	}
}

// waitJobPod waits until the Job has succeeded and returns its one pod.
func (s *stack) waitJobPod(t *testing.T, ns, job string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	framework.Eventually(t, "job "+job+" succeeded", timeout, func() (bool, string) {
		j, err := s.Client.BatchV1().Jobs(ns).Get(context.Background(), job, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if j.Status.Failed > 0 {
			t.Fatalf("job %s failed: %+v; events of its pods: %s", job, j.Status, s.jobPodEvents(t, ns, job))
		}
		list, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
		if err != nil {
			return false, err.Error()
		}
		pods = list.Items
		return j.Status.Succeeded == 1, fmt.Sprintf("%+v, pods: %s", j.Status, podsBrief(pods))
	})
	if len(pods) != 1 {
		t.Fatalf("job %s has %d pods, want the one that succeeded", job, len(pods))
	}
	return &pods[0]
}

// podsBrief says where each pod is and why it is not scheduled, if it is
// not, for failure messages.
func podsBrief(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "[%s on %q: %s", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
				fmt.Fprintf(&b, ", unschedulable: %s", c.Message)
			}
		}
		b.WriteString("] ")
	}
	return b.String()
}

// jobPodEvents lists the events of the Job's pods, for failure messages.
func (s *stack) jobPodEvents(t *testing.T, ns, job string) string {
	t.Helper()
	list, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range list.Items {
		for _, e := range s.Events(t, ns, "Pod", p.Name) {
			fmt.Fprintf(&b, "%s: %s: %s\n", p.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}

// waitNoPlatform waits until pod's image pull has failed for want of an
// arm64 variant of image: ErrImagePull or ImagePullBackOff naming the
// architecture, a Failed event, and no container ever started. The pod is
// then deleted: its pull retries would only load the slow host.
func (s *stack) waitNoPlatform(t *testing.T, ns, pod, image string) {
	t.Helper()
	var msg string
	framework.Eventually(t, pod+": a failed pull of "+image, 8*time.Minute, func() (bool, string) {
		p := s.Pod(t, ns, pod)
		if len(p.Status.ContainerStatuses) == 1 {
			cs := p.Status.ContainerStatuses[0]
			if cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil {
				t.Fatalf("%s: a container of %s started on the arm64 host: %s", pod, image, framework.DescribeStatus(p))
			}
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") && w.Message != "" {
				msg = w.Reason + ": " + w.Message
				return true, ""
			}
		}
		return false, framework.DescribeStatus(p)
	})
	t.Logf("%s: %s", pod, msg)
	if !strings.Contains(msg, "arm64") || !strings.Contains(msg, image) {
		t.Errorf("%s: waiting %q: want the image and the architecture it lacks (arm64)", pod, msg)
	}
	// Through the relay too, the message names the registry, never the
	// relay's passing loopback address on the host.
	if reg := s.registry(t)["REGISTRY"]; strings.Contains(strings.ReplaceAll(msg, reg, ""), "127.0.0.1:") {
		t.Errorf("%s: waiting %q names an address other than the registry %s", pod, msg, reg)
	}
	failed := false
	for _, e := range s.Events(t, ns, "Pod", pod) {
		failed = failed || (e.Reason == "Failed" && strings.Contains(e.Message, "Failed to pull image") && strings.Contains(e.Message, "arm64"))
	}
	if !failed {
		t.Errorf("%s: no Failed event naming arm64: %v", pod, s.Events(t, ns, "Pod", pod))
	}
	if p := s.Pod(t, ns, pod); p.Status.Phase != corev1.PodPending {
		t.Errorf("%s: phase %s, want Pending", pod, p.Status.Phase)
	}
	_, _ = s.KubectlErr("-n", ns, "delete", "pod", pod, "--wait=false")
}

// arm64Streams runs kubectl logs -f, attach, exec, port-forward and top
// against pod (streamsPod) on the arm64 node, then deletes it.
func (s *stack) arm64Streams(t *testing.T, ns, pod string) {
	t.Helper()
	s.WaitPodPhase(t, ns, pod, corev1.PodRunning, 10*time.Minute)
	defer func() { _, _ = s.KubectlErr("-n", ns, "delete", "pod", pod, "--wait=false") }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// logs -f, from the start: "ready" once the echo server listens.
	follow := s.KubectlCmd(ctx, "-n", ns, "logs", "-f", pod)
	logs := &output{}
	follow.Stdout, follow.Stderr = logs, logs
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = follow.Process.Kill(); _ = follow.Wait() }()
	logs.waitFor(t, "ready\n", 0, 3*time.Minute)

	// attach: what is written to the shell's stdin comes back, and logs -f,
	// still following, sees it too.
	s.attachEcho(t, ns, pod, "main", 2*time.Minute)
	logs.waitFor(t, "got:hello\n", 0, time.Minute)

	// exec, with and without stdin.
	if code, got, errs := s.kubectlExit(t, nil, "-n", ns, "exec", pod, "--", "uname", "-m"); code != 0 || got != "aarch64\n" {
		t.Errorf("kubectl exec uname -m: exit %d, %q (stderr %q), want aarch64", code, got, errs)
	}
	if code, got, errs := s.kubectlExit(t, []byte("through stdin\n"), "-n", ns, "exec", "-i", pod, "--", "cat"); code != 0 || got != "through stdin\n" {
		t.Errorf("kubectl exec -i cat: exit %d, %q (stderr %q)", code, got, errs)
	}

	// port-forward to the echo server.
	local := s.portForward(t, ns, pod, 8080)
	start := time.Now()
	echoRoundTrip(t, local, 256<<10)
	t.Logf("port-forward: 256 KiB each way in %s", time.Since(start).Round(time.Millisecond))

	// top: metrics-server scrapes rbn-kubelet for the arm64 node's pods.
	if !s.InCluster {
		t.Log("kubectl top not checked: metrics-server runs with rbn installed in the cluster (RBN_IN_CLUSTER=1, the default)")
		return
	}
	framework.Eventually(t, "kubectl top pod "+pod, 4*time.Minute, func() (bool, string) {
		got, err := s.KubectlErr("top", "pod", pod, "-n", ns, "--no-headers")
		f := strings.Fields(got)
		return err == nil && len(f) == 3 && f[0] == pod, got
	})
}

// arm64Relay switches the arm64 node to imagePull: ThroughKubelet and pulls
// rbn/multiarch:1 (gone from the host first, so its arm64 layer travels) and
// rbn/amd64only:1 through rbn-kubelet's relay: the host picks its platform
// from the index the relay serves.
func (s *stack) arm64Relay(t *testing.T, ns string, arm framework.BuildHost, reg map[string]string) {
	t.Helper()
	// The directly pulled image leaves the host with the pod that used it,
	// once rbn-kubelet has removed that pod's containers from the host. Its
	// object leaves the apiserver earlier, once they have stopped, and a
	// forced rmi in between races their removal.
	p, err := s.Client.CoreV1().Pods(ns).Get(context.Background(), "multiarch-arm64", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	_, _ = s.KubectlErr("-n", ns, "delete", "pod", "multiarch-arm64", "--ignore-not-found", "--wait=true", "--timeout=5m")
	// The emulated host's podman can be slow to answer while it cleans up
	// after a pod: each attempt is bounded, and tried again.
	if err == nil {
		framework.Eventually(t, "multiarch-arm64's containers gone from "+arm.Name, 5*time.Minute, func() (bool, string) {
			out, err := s.HostPodman(arm.Index, "ps", "-a", "--filter", "label=rbn.dev/pod-uid="+string(p.UID), "--format", "name={{.Names}}")
			// The output has podman's own log lines too (the emulated
			// host's "failure getting variant").
			return err == nil && !strings.Contains(out, "name="), fmt.Sprint(out, err)
		})
	}
	framework.Eventually(t, reg["IMAGE_MULTIARCH"]+" removed from "+arm.Name, 5*time.Minute, func() (bool, string) {
		out, err := s.HostPodman(arm.Index, "rmi", "--force", "--ignore", reg["IMAGE_MULTIARCH"])
		return err == nil, fmt.Sprint(out, err)
	})

	s.Kubectl(t, "patch", "remotebuildnode", arm.Name, "--type=merge", "-p", `{"spec":{"imagePull":"ThroughKubelet"}}`)
	// The node's runtime restarts with the new spec.
	framework.Eventually(t, arm.Name+" Ready with imagePull ThroughKubelet", 5*time.Minute, func() (bool, string) {
		r, ok := s.RBN(t, arm.Name)
		if !ok {
			return false, "RemoteBuildNode absent"
		}
		return r.Spec.ImagePull == rbnv1.ImagePullThroughKubelet && r.Status.ObservedGeneration == r.Generation && r.Status.Phase == rbnv1.PhaseReady,
			fmt.Sprintf("generation %d, %+v", r.Generation, r.Status)
	})
	s.WaitNodeReady(t, arm.Name, corev1.ConditionTrue, nil, 5*time.Minute)

	s.createAtOnce(t, ns, []*corev1.Pod{
		imageJobPod(ns, "relay-multiarch-arm64", arm.Name, reg["IMAGE_MULTIARCH"], true),
		imageJobPod(ns, "relay-amd64only-arm64", arm.Name, reg["IMAGE_AMD64ONLY"], true),
	})
	s.WaitPodPhase(t, ns, "relay-multiarch-arm64", corev1.PodSucceeded, 10*time.Minute)
	if got := s.Kubectl(t, "-n", ns, "logs", "relay-multiarch-arm64"); got != "arm64\n" {
		t.Errorf("through the relay, /arch of %s on the arm64 host is %q, want the arm64 variant", reg["IMAGE_MULTIARCH"], got)
	}
	blobs, bytes, ok := s.relayed(t, ns, "relay-multiarch-arm64")
	if !ok || blobs < 2 {
		t.Errorf("relay-multiarch-arm64: relayed=%v, %d blobs, want its config and layer through rbn-kubelet; events: %v", ok, blobs, s.Events(t, ns, "Pod", "relay-multiarch-arm64"))
	}
	t.Logf("relayed the arm64 variant: %d blobs, %d bytes", blobs, bytes)
	s.waitNoPlatform(t, ns, "relay-amd64only-arm64", reg["IMAGE_AMD64ONLY"])
}
