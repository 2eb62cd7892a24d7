package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// The services benchmark's pods and images.
const (
	// servicesTargetImage is the build hosts' sshd test image
	// (hack/hosts.sh): the customization job's sshd.
	servicesTargetImage = "localhost/rbn/sshd:1.0"
	// servicesSetups is how many `ssh true` logins one setup measurement
	// times (the client pod's clock, /proc/uptime, has 10 ms steps).
	servicesSetups = 20
)

// RunServices measures issue #14's figures on an in-cluster stack with a
// worker node: `scp` of RBN_BENCH_SSH_MIB MiB (default 1024) into a
// customization-shaped sshd pod on a remote build node, from a client pod
// on the worker node, through the pod's Service (kube-proxy, rbn-portal,
// the port-forward endpoint of the node's kubelet API on rbn-kubelet, the
// host's SSH connection)
// against the same copy from the same pod straight to the pod's address
// through the build host's sshd (a ProxyCommand: the host's direct-tcpip,
// the old hand-made path without its iptables); and the connection setup
// time (`ssh true`, servicesSetups logins per measurement) of each path.
// The paths alternate, RBN_BENCH_SSH_RUNS times each (default 3); medians.
// Times are taken by the client pod's own clock around the clients, not
// around kubectl exec. It prints a markdown section (and writes it to
// $RBN_BENCH_SERVICES_OUT when set). It never fails on speed.
func RunServices(t *testing.T) {
	env, err := framework.EnvFromOS()
	if err != nil {
		t.Skipf("%v: run the benchmarks with `make bench`", err)
	}
	if !env.InCluster {
		t.Skip("rbn-portal runs in the cluster: `make bench` brings up an in-cluster stack with a worker node for this section")
	}
	mib := max(benchEnvInt(t, "RBN_BENCH_SSH_MIB", 1024), 1)
	runs := max(benchEnvInt(t, "RBN_BENCH_SSH_RUNS", 3), 1)
	ctx := context.Background()
	stack, err := framework.Connect(env, nil)
	if err != nil {
		t.Fatal(err)
	}
	kube := stack.Client
	worker, err := framework.ReadEnvFile(filepath.Join(env.State, "worker", "worker.env"))
	if err != nil {
		t.Fatalf("the stack has no worker node: %v", err)
	}
	hosts, err := stack.BuildHosts()
	if err != nil || len(hosts) == 0 {
		t.Fatalf("no build host: %v", err)
	}
	host := hosts[0]

	ns, err := createNamespace(ctx, kube, "bench-services")
	if err != nil {
		t.Fatal(err)
	}
	defer deleteNamespace(kube, ns)
	userKey := framework.NewUserKey(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keys"}, StringData: map[string]string{
		"id_ed25519":      framework.ReadFile(t, userKey.Private),
		"authorized_keys": userKey.Public,
		"host_key":        framework.ReadFile(t, host.Key),
		"known_hosts":     framework.ReadFile(t, host.Known),
	}}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The customization job's sshd on the build host, behind a Service.
	keys := corev1.Volume{Name: "keys", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "keys", DefaultMode: ptr.To[int32](0o400)}}}
	target := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "customize", Labels: map[string]string{"app": "customize"}},
		Spec: corev1.PodSpec{
			NodeName: host.Name,
			Containers: []corev1.Container{{Name: "sshd", Image: servicesTargetImage,
				Ports:          []corev1.ContainerPort{{Name: "ssh", ContainerPort: 22}},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("ssh")}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "image", MountPath: "/mnt/image"},
					{Name: "keys", MountPath: "/root/.ssh", ReadOnly: true}}}},
			Volumes:                       []corev1.Volume{{Name: "image", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}, keys},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	framework.RemoteNodePlacement(&target.Spec)
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, target, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "customize"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "customize"},
			Ports: []corev1.ServicePort{{Name: "ssh", Port: 22, TargetPort: intstr.FromString("ssh")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The users' client, on the worker node: the real OpenSSH client, with
	// the user's key and the build host's key and known_hosts.
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{
			NodeName: worker["NODE_NAME"],
			Containers: []corev1.Container{{Name: "main", Image: worker["SSHD_IMAGE"], ImagePullPolicy: corev1.PullNever,
				Command:      []string{"sleep", "7200"},
				VolumeMounts: []corev1.VolumeMount{{Name: "keys", MountPath: "/key", ReadOnly: true}}}},
			Volumes:                       []corev1.Volume{keys},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stack.WaitPodPhase(t, ns, "client", corev1.PodRunning, 2*time.Minute)
	var podIP string
	framework.Eventually(t, "the sshd pod Ready", 3*time.Minute, func() (bool, string) {
		p, err := kube.CoreV1().Pods(ns).Get(ctx, "customize", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		podIP = p.Status.PodIP
		return podReady(p), framework.DescribeStatus(p)
	})

	// The two paths, as ssh options and the address to log in to.
	common := "-i /key/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=20"
	paths := []struct{ name, opts, login string }{
		{"through the Service", common, "root@" + svc.Spec.ClusterIP},
		{"straight over the host's SSH", common + fmt.Sprintf(` -o "ProxyCommand=ssh -i /key/host_key -p %d -o BatchMode=yes -o UserKnownHostsFile=/key/known_hosts -o LogLevel=ERROR -W %%h:%%p %s@%s"`,
			host.Port, host.User, host.Address), "root@" + podIP},
	}
	// clientRun runs script in the client pod and returns its output.
	clientRun := func(script string) string {
		t.Helper()
		out, err := stack.KubectlErr("-n", ns, "exec", "client", "--", "sh", "-c", script)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// Both paths work (the Service's endpoint may lag the pod's readiness).
	for _, p := range paths {
		framework.Eventually(t, "ssh "+p.name, 2*time.Minute, func() (bool, string) {
			out, err := stack.KubectlErr("-n", ns, "exec", "client", "--", "sh", "-c", fmt.Sprintf("ssh %s %s hostname", p.opts, p.login))
			return strings.TrimSpace(out) == "customize", fmt.Sprintf("%q %v", out, err)
		})
	}
	clientRun(fmt.Sprintf("dd if=/dev/urandom of=/tmp/data bs=1M count=%d 2>/dev/null", mib))
	// timed runs cmd in the client pod and returns how long it took by the
	// pod's clock.
	timed := func(cmd string) time.Duration {
		t.Helper()
		out := clientRun(fmt.Sprintf("s=$(cut -d' ' -f1 /proc/uptime); %s >/dev/null; e=$(cut -d' ' -f1 /proc/uptime); echo $s $e", cmd))
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("timing %q: %q", cmd, out)
		}
		s, err1 := strconv.ParseFloat(f[0], 64)
		e, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("timing %q: %q", cmd, out)
		}
		return time.Duration((e - s) * float64(time.Second))
	}
	copies := make([][]time.Duration, len(paths))
	setups := make([][]time.Duration, len(paths))
	for run := range runs {
		for i, p := range paths {
			copies[i] = append(copies[i], timed(fmt.Sprintf("scp %s /tmp/data %s:/mnt/image/data-%d", p.opts, p.login, run)))
			clientRun(fmt.Sprintf("ssh %s %s rm /mnt/image/data-%d", p.opts, p.login, run))
			loop := fmt.Sprintf("for i in $(seq %d); do ssh %s %s true || exit 1; done", servicesSetups, p.opts, p.login)
			setups[i] = append(setups[i], timed(loop)/servicesSetups)
		}
	}

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## 7. ssh and scp through a Service (%d MiB, issue #14)", mib)
	w("")
	w("A customization-shaped sshd pod on a remote build node (%s) behind a ClusterIP Service; the real OpenSSH client in a pod on the worker node. "+
		"Through the Service: kube-proxy, rbn-portal on the worker node, rbn-kubelet's port-forward endpoint (the node's kubelet API, dialed directly: rbn-portal's default --port-forward-via=kubelet, rbn's raw port-forward), the host's SSH connection. "+
		"Straight: the same client to the pod's address through the host's sshd (ProxyCommand, direct-tcpip): the direct SSH path. "+
		"The paths alternate, %d runs each; times by the client pod's clock around the clients; each setup figure is one `ssh true` login, the mean of %d in a row.",
		host.Name, runs, servicesSetups)
	w("")
	w("| path | scp of %d MiB (median) | throughput | ratio | login (`ssh true`, median) | difference |", mib)
	w("| --- | --- | --- | --- | --- | --- |")
	direct, directSetup := median(copies[1]), median(setups[1])
	for i, p := range paths {
		d, s := median(copies[i]), median(setups[i])
		ratio, diff := "100% (baseline)", "baseline"
		if i == 0 {
			ratio = fmt.Sprintf("%.0f%% of straight (goal >= 70%%)", 100*direct.Seconds()/d.Seconds())
			diff = fmt.Sprintf("%+.0f ms (goal < +50 ms)", float64(s-directSetup)/float64(time.Millisecond))
		}
		w("| %s | %s | %.1f MiB/s | %s | %s | %s |", p.name, d.Round(time.Millisecond), float64(mib)/d.Seconds(), ratio, s.Round(100*time.Microsecond), diff)
	}
	w("")
	w("Runs (scp; login): through the Service %s; %s. Straight %s; %s. The machine has %d cores, load average %s at the end.",
		fmtDurs(copies[0]), fmtDurs(setups[0]), fmtDurs(copies[1]), fmtDurs(setups[1]), goruntime.NumCPU(), framework.Loadavg())
	w("")
	w("Command: `%s`", cmp.Or(os.Getenv("RBN_BENCH_SERVICES_COMMAND"), "go test -tags bench,... -run '^TestBenchServices$' ./e2e/ (command line not given)"))
	fmt.Print("\n" + b.String())
	if out := os.Getenv("RBN_BENCH_SERVICES_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
