//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// sshdImage is the test hosts' image-customization-shaped sshd (hack/hosts.sh).
const sshdImage = "localhost/rbn/sshd:1.0"

// customizeJob applies an image-customization-shaped Job on node, as the
// image service makes them: a privileged-free init container that lays the
// image out under /mnt/image, a native sidecar, and sshd on port 22 with
// the user's key from a Secret, until the user touches
// /mnt/image/complete. Its pod carries the label app: <name>-customize.
func (s *stack) customizeJob(t *testing.T, ns, name, node string, key framework.UserKey) {
	t.Helper()
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %[1]s-keys, namespace: %[2]s}
stringData:
  authorized_keys: |
    %[3]s
---
apiVersion: batch/v1
kind: Job
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {app: %[1]s-customize}
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      nodeSelector: {rbn.dev/remote-build-node: "true"}
      tolerations: [{key: rbn.dev/remote-build-node, operator: Exists, effect: NoSchedule}]
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchFields: [{key: metadata.name, operator: In, values: [%[4]s]}]}]
      volumes:
      - {name: image, emptyDir: {}}
      - name: keys
        secret: {secretName: %[1]s-keys, defaultMode: 0600}
      initContainers:
      - name: unpack
        image: %[5]s
        command: [sh, -c, "mkdir -p /mnt/image/etc && echo %[1]s >/mnt/image/etc/image-id"]
        volumeMounts: [{name: image, mountPath: /mnt/image}]
      - name: logger
        image: %[5]s
        restartPolicy: Always
        command: [sh, -c, "exec sleep 2147483647"]
      containers:
      - name: sshd
        image: %[6]s
        command: [sh, -c, "/usr/local/bin/rbn-sshd & while [ ! -e /mnt/image/complete ]; do sleep 1; done; kill $!"]
        ports: [{name: ssh, containerPort: 22}]
        readinessProbe:
          tcpSocket: {port: ssh}
          periodSeconds: 1
        volumeMounts:
        - {name: image, mountPath: /mnt/image}
        - {name: keys, mountPath: /root/.ssh, readOnly: true}
`, name, ns, strings.TrimSpace(key.Public), node, framework.TestImage, sshdImage))
}

// sshOptions are the real ssh client's options (scp's when portFlag is
// -P) to log in as root at addr with key, trusting the host key the
// container made at its start; login is the user@host to name.
func sshOptions(key framework.UserKey, addr, portFlag string) (opts []string, login string) {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"-i", key.Private, portFlag, port, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"}, "root@" + host
}

// runSSH runs the real ssh client against addr and returns its output.
func runSSH(t *testing.T, key framework.UserKey, addr, command string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts, login := sshOptions(key, addr, "-p")
	out, err := framework.Command(ctx, "ssh", append(opts, login, command)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh %s %q: %v\n%s", addr, command, err, out)
	}
	return string(out)
}

// runSCP copies the local file to path on addr with the real scp client
// (the SFTP protocol, OpenSSH's default).
func runSCP(t *testing.T, key framework.UserKey, addr, file, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts, login := sshOptions(key, addr, "-P")
	if out, err := framework.Command(ctx, "scp", append(opts, file, login+":"+path)...).CombinedOutput(); err != nil {
		t.Fatalf("scp %s to %s:%s: %v\n%s", file, addr, path, err, out)
	}
}

// The image-customization job on a remote build node (the isolated host's
// too): the user logs in with the real ssh client through kubectl
// port-forward, works in /mnt/image, copies a file in with scp, and ends
// the job by touching /mnt/image/complete; nothing of it stays on the host.
func TestCustomizationJobOverSSH(t *testing.T) {
	s := newStack(t)
	key := framework.NewUserKey(t)
	for _, tc := range []struct {
		name string
		host int
	}{{"direct", 1}, {"isolated", s.isolatedHost(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := s.Namespace(t)
			job := "ims-" + tc.name
			s.customizeJob(t, ns, job, s.Host(t, tc.host)["NAME"], key)
			pod := s.waitJobReady(t, ns, job)
			addr := s.portForward(t, ns, pod.Name, 22)

			if got := runSSH(t, key, addr, "cat /mnt/image/etc/image-id; hostname"); got != job+"\n"+pod.Name+"\n" {
				t.Errorf("ssh: %q, want the image's id and the pod's hostname", got)
			}
			payload := filepath.Join(t.TempDir(), "overlay.conf")
			if err := os.WriteFile(payload, []byte("customized by e2e\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			runSCP(t, key, addr, payload, "/mnt/image/etc/overlay.conf")
			if got := s.Kubectl(t, "-n", ns, "exec", pod.Name, "-c", "sshd", "--", "cat", "/mnt/image/etc/overlay.conf"); got != "customized by e2e\n" {
				t.Errorf("the copied file in the pod: %q", got)
			}

			runSSH(t, key, addr, "touch /mnt/image/complete")
			done := s.waitJobPod(t, ns, job, 2*time.Minute)
			if done.UID != pod.UID {
				t.Errorf("the job's pod changed: %s, then %s", pod.UID, done.UID)
			}
			s.Kubectl(t, "-n", ns, "delete", "job", job, "--cascade=foreground", "--wait=true", "--timeout=60s")
			framework.Eventually(t, "the job's podman objects gone from the host", time.Minute, func() (bool, string) {
				left := s.HostObjects(t, tc.host, string(pod.UID))
				return len(left) == 0, strings.Join(left, "\n")
			})
		})
	}
}

// waitJobReady waits for the one pod of job to be Ready and returns it.
func (s *stack) waitJobReady(t *testing.T, ns, job string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	framework.Eventually(t, "job "+job+"'s pod Ready", 2*time.Minute, func() (bool, string) {
		list, err := s.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
		if err != nil || len(list.Items) != 1 {
			return false, fmt.Sprint(err, list)
		}
		pod = &list.Items[0]
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, ""
			}
		}
		return false, podsBrief(list.Items)
	})
	return pod
}
