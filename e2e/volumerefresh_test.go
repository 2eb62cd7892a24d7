//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// A running pod's configMap volume follows the ConfigMap as on a kubelet:
// an update shows within about a minute (kubelet's resync, with jitter)
// in kubelet's ..data layout, while a subPath mount of the same key keeps
// what its container started with. The pod also mounts a projected token
// of the apiserver's shortest life (600 s), renewed at 80% of it (not
// awaited here: the unit tests cover the renewal with a fake clock).
func TestFilesVolumesFollowTheirSources(t *testing.T) {
	s := newStack(t)
	ns := s.Namespace(t)
	s.Apply(t, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: app, namespace: %[1]s}
data: {key: first}
---
apiVersion: v1
kind: Pod
metadata: {name: follows, namespace: %[1]s}
spec:%[2]s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  # One token per pod on rbn (docs/podspec.md): this pod's own, not the
  # admission-added kube-api-access one with another expiration.
  automountServiceAccountToken: false
  containers:
    - name: main
      image: %[3]s
      command: [sleep, "3600"]
      volumeMounts:
        - {name: config, mountPath: /config, readOnly: true}
        - {name: config, mountPath: /pinned/key, subPath: key, readOnly: true}
        - {name: token, mountPath: /token, readOnly: true}
  volumes:
    - {name: config, configMap: {name: app}}
    - name: token
      projected: {sources: [{serviceAccountToken: {path: token, expirationSeconds: 600}}]}
`, ns, framework.PodSpec, framework.TestImage))
	s.WaitPodPhase(t, ns, "follows", corev1.PodRunning, 2*time.Minute)
	cat := func(path string) (string, error) {
		return s.KubectlErr("exec", "-n", ns, "follows", "--", "cat", path)
	}
	for _, p := range []string{"/config/key", "/pinned/key"} {
		if got, err := cat(p); err != nil || got != "first" {
			t.Fatalf("%s: %q, %v; want the ConfigMap's first value", p, got, err)
		}
	}
	if tok, err := cat("/token/token"); err != nil || strings.Count(tok, ".") != 2 {
		t.Errorf("/token/token: %q, %v; want a JWT", tok, err)
	}
	// kubelet's layout: the key is a symlink through ..data.
	if out, err := s.KubectlErr("exec", "-n", ns, "follows", "--", "ls", "-a", "/config"); err != nil || !strings.Contains(out, "..data") {
		t.Errorf("ls -a /config: %q, %v; want kubelet's ..data layout", out, err)
	}

	s.Kubectl(t, "patch", "configmap", "app", "-n", ns, "--type=merge", "-p", `{"data":{"key":"second"}}`)
	framework.Eventually(t, "the ConfigMap's new value in the pod's volume", 90*time.Second, func() (bool, string) {
		got, err := cat("/config/key")
		if err != nil {
			return false, err.Error()
		}
		return got == "second", "/config/key holds " + got
	})
	if got, err := cat("/pinned/key"); err != nil || got != "first" {
		t.Errorf("subPath mount /pinned/key: %q, %v; want the value the container started with", got, err)
	}
}
