//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/nodeidentity"
	"github.com/remote-build-nodes/rbn/internal/testcert"
)

// rbn-kubelet acts for each node it serves as that node (config
// nodeIdentities, as manifests/ and the local stack run it): a client
// certificate for system:node:<name> per node, which rbn-approver
// approves, so that the Node authorizer and NodeRestriction fence what it
// does for a node as they fence a kubelet, and its own account keeps no
// right to pods' statuses or to tokens.

// clientAs is a client of the stack's apiserver as the cluster's admin
// impersonating who.
func (s *stack) clientAs(t *testing.T, who rest.ImpersonationConfig) kubernetes.Interface {
	t.Helper()
	rc := rest.CopyConfig(s.Rest)
	rc.Impersonate = who
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// nodeUser is the identity of node name, as its certificate carries it.
func nodeUser(name string) rest.ImpersonationConfig {
	return rest.ImpersonationConfig{UserName: nodeidentity.UserPrefix + name, Groups: []string{nodeidentity.Group, "system:authenticated"}}
}

// nodeIdentityRequest is a request for the client certificate of
// commonName in organizations, as a kubelet (or rbn-kubelet) makes it.
func nodeIdentityRequest(t *testing.T, commonName string, organizations ...string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-identity-"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           testcert.RequestPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName, Organization: organizations}}),
			SignerName:        certificatesv1.KubeAPIServerClientKubeletSignerName,
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			ExpirationSeconds: ptr.To[int32](3600),
		},
	}
}

// requestedIdentity is the common name a CSR asks for ("" if it does not parse).
func requestedIdentity(csr *certificatesv1.CertificateSigningRequest) string {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		return ""
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return ""
	}
	return req.Subject.CommonName
}

func csrCondition(csr *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType) (certificatesv1.CertificateSigningRequestCondition, bool) {
	i := slices.IndexFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool { return c.Type == typ })
	if i < 0 {
		return certificatesv1.CertificateSigningRequestCondition{}, false
	}
	return csr.Status.Conditions[i], true
}

func TestNodeIdentities(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	admin := s.Client
	account := s.kubeletIdentity()
	asAccount := s.clientAs(t, account)
	fault := framework.RecordFault(t, "rbn-kubelet's credential or a node's identity used beyond that node")
	attempts, refusals := 0, 0
	defer func() {
		fault.Figure(fmt.Sprintf("%d requests beyond a node's own attempted, %d refused by the apiserver or rbn-approver", attempts, refusals))
	}()
	// refused checks that op, allowed to the admin, is refused to c.
	refused := func(t *testing.T, who string, c kubernetes.Interface, op func(kubernetes.Interface) error) {
		t.Helper()
		if err := op(admin); err != nil {
			t.Fatalf("as admin: %v (want allowed: the request itself must be valid)", err)
		}
		attempts++
		err := op(c)
		if !apierrors.IsForbidden(err) {
			t.Fatalf("as %s: %v, want forbidden", who, err)
		}
		refusals++
		t.Logf("refused to %s: %v", who, err)
	}
	allowed := func(t *testing.T, who string, c kubernetes.Interface, op func(kubernetes.Interface) error) {
		t.Helper()
		if err := op(c); err != nil {
			t.Fatalf("as %s: %v, want allowed", who, err)
		}
	}

	// A node served from now on: its identity is requested, approved and
	// issued while it starts.
	name := framework.UniqueName("e2e-identity")
	s.registerExtra(t, name, 2, framework.ReadFile(t, s.Host(t, 2)["KNOWN_HOSTS"]), "")
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 90*time.Second)
	asNode := s.clientAs(t, nodeUser(name))

	// A Node of another kubelet (none runs: the object is enough for the
	// apiserver) with a pod bound to it, and a RemoteBuildNode named like
	// it, which rbn refuses to serve (NodeNameTaken).
	foreign := framework.UniqueName("e2e-identity-foreign")
	s.Apply(t, fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s, labels: {e2e: other-kubelet}}\n", foreign))
	t.Cleanup(func() { _, _ = s.KubectlErr("delete", "node", foreign, "--ignore-not-found") })
	ns := s.Namespace(t)
	// A Secret and a ConfigMap for each pod, as volumes.
	for _, owner := range []string{"own", "other"} {
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: owner + "-secret"}, StringData: map[string]string{"k": owner + "-s"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: owner + "-config"}, Data: map[string]string{"k": owner + "-c"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	withObjects := func(spec *corev1.PodSpec, owner string) {
		spec.Volumes = append(spec.Volumes,
			corev1.Volume{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: owner + "-secret"}}},
			corev1.Volume{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: owner + "-config"}}}})
		spec.Containers[0].VolumeMounts = append(spec.Containers[0].VolumeMounts,
			corev1.VolumeMount{Name: "secret", MountPath: "/objects/secret"}, corev1.VolumeMount{Name: "config", MountPath: "/objects/config"})
	}
	other := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns},
		Spec:       corev1.PodSpec{NodeName: foreign, Containers: []corev1.Container{{Name: "c", Image: framework.TestImage}}},
	}
	withObjects(&other.Spec, "other")
	other, err := admin.CoreV1().Pods(ns).Create(ctx, other, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No kubelet confirms its deletion: force it, before the namespace goes.
	t.Cleanup(func() {
		_ = admin.CoreV1().Pods(ns).Delete(context.Background(), other.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	})
	s.registerAs(t, foreign, 1)

	// A pod on the new node, with its service account's token, a Secret
	// and a ConfigMap: it runs, its statuses written, its token requested
	// and its objects read as the node (rbn-kubelet's account may read no
	// Secret or ConfigMap of the pod's namespace).
	own := framework.JobPod(ns, "own", name, nil, []string{"sleep", "3600"})
	withObjects(&own.Spec, "own")
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := s.WaitPodPhase(t, ns, own.Name, corev1.PodRunning, 90*time.Second)
	for file, want := range map[string]string{"/objects/secret/k": "own-s", "/objects/config/k": "own-c"} {
		if got := strings.TrimSpace(s.Kubectl(t, "-n", ns, "exec", own.Name, "--", "cat", file)); got != want {
			t.Errorf("%s in the pod: %q, want %q", file, got, want)
		}
	}

	t.Run("issued", func(t *testing.T) {
		list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeAPIServerClientKubeletSignerName).String(),
		})
		if err != nil {
			t.Fatal(err)
		}
		var issued []string
		for i := range list.Items {
			csr := &list.Items[i]
			if requestedIdentity(csr) != nodeidentity.UserPrefix+name {
				continue
			}
			if csr.Spec.Username != account.UserName {
				t.Errorf("CSR %s for node %s requested by %q, want rbn-kubelet (%s)", csr.Name, name, csr.Spec.Username, account.UserName)
			}
			approved, ok := csrCondition(csr, certificatesv1.CertificateApproved)
			if !ok || approved.Reason != "RBNNodeIdentity" || len(csr.Status.Certificate) == 0 {
				t.Errorf("CSR %s for node %s: conditions %+v, certificate %d bytes: want approved by rbn-approver (RBNNodeIdentity) and issued", csr.Name, name, csr.Status.Conditions, len(csr.Status.Certificate))
				continue
			}
			block, _ := pem.Decode(csr.Status.Certificate)
			if block == nil {
				t.Fatalf("CSR %s: the certificate is not PEM", csr.Name)
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != nodeidentity.UserPrefix+name || !slices.Equal(cert.Subject.Organization, []string{nodeidentity.Group}) {
				t.Errorf("CSR %s: certificate of %q in %q, want %s%s in [%s]", csr.Name, cert.Subject.CommonName, cert.Subject.Organization, nodeidentity.UserPrefix, name, nodeidentity.Group)
			}
			issued = append(issued, fmt.Sprintf("%s (valid %s)", csr.Name, cert.NotAfter.Sub(cert.NotBefore).Round(time.Minute)))
		}
		if len(issued) == 0 {
			t.Fatalf("no CSR for %s%s among %d of signer %s", nodeidentity.UserPrefix, name, len(list.Items), certificatesv1.KubeAPIServerClientKubeletSignerName)
		}
		t.Logf("node %s's identity: %v", name, issued)
	})

	dry := []string{metav1.DryRunAll}
	status := func(pod string) func(kubernetes.Interface) error {
		return func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Pods(ns).Patch(ctx, pod, types.StrategicMergePatchType,
				[]byte(`{"status":{"conditions":[{"type":"rbn.dev/identity-test","status":"True"}]}}`), metav1.PatchOptions{DryRun: dry}, "status")
			return err
		}
	}
	// Token requests have no dry run: each allowed one is a real token.
	token := func(pod *corev1.Pod) func(kubernetes.Interface) error {
		return func(c kubernetes.Interface) error {
			var ref *authenticationv1.BoundObjectReference
			if pod != nil {
				ref = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
			}
			_, err := c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref},
			}, metav1.CreateOptions{})
			return err
		}
	}

	getSecret := func(name string) func(kubernetes.Interface) error {
		return func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	getConfigMap := func(name string) func(kubernetes.Interface) error {
		return func(c kubernetes.Interface) error {
			_, err := c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			return err
		}
	}
	listSecrets := func(c kubernetes.Interface) error {
		_, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		return err
	}

	// What a stolen rbn-kubelet credential could do before: write any
	// pod's status, mint any service account's token, read any Secret or
	// ConfigMap.
	t.Run("rbn-kubelet's account", func(t *testing.T) {
		refused(t, account.UserName, asAccount, status(running.Name))
		refused(t, account.UserName, asAccount, token(running))
		refused(t, account.UserName, asAccount, token(nil))
		refused(t, account.UserName, asAccount, getSecret("own-secret"))
		refused(t, account.UserName, asAccount, getConfigMap("own-config"))
	})

	t.Run("a node's identity", func(t *testing.T) {
		who := nodeidentity.UserPrefix + name
		allowed(t, who, asNode, status(running.Name))
		allowed(t, who, asNode, token(running))
		allowed(t, who, asNode, getSecret("own-secret"))
		allowed(t, who, asNode, getConfigMap("own-config"))
		refused(t, who, asNode, getSecret("other-secret"))
		refused(t, who, asNode, getConfigMap("other-config"))
		refused(t, who, asNode, listSecrets)
		refused(t, who, asNode, status(other.Name))
		refused(t, who, asNode, token(other))
		refused(t, who, asNode, token(nil))
		refused(t, who, asNode, func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().Patch(ctx, foreign, types.StrategicMergePatchType,
				[]byte(`{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Fenced","message":"test"}]}}`), metav1.PatchOptions{DryRun: dry}, "status")
			return err
		})
	})

	// What rbn-approver refuses to issue to rbn-kubelet: the identity of a
	// node rbn does not serve, and anything but a node's identity.
	t.Run("refused identities", func(t *testing.T) {
		denied := func(t *testing.T, csr *certificatesv1.CertificateSigningRequest, reason string) {
			t.Helper()
			attempts++
			created, err := asAccount.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("as %s: creating the request: %v", account.UserName, err)
			}
			t.Cleanup(func() {
				_ = admin.CertificatesV1().CertificateSigningRequests().Delete(context.Background(), created.Name, metav1.DeleteOptions{})
			})
			framework.Eventually(t, fmt.Sprintf("CSR %s (%s) denied: %s", created.Name, requestedIdentity(created), reason), 30*time.Second, func() (bool, string) {
				got, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
				if err != nil {
					return false, err.Error()
				}
				if _, ok := csrCondition(got, certificatesv1.CertificateApproved); ok || len(got.Status.Certificate) > 0 {
					t.Fatalf("CSR %s for %s approved: %+v", got.Name, requestedIdentity(got), got.Status.Conditions)
				}
				c, ok := csrCondition(got, certificatesv1.CertificateDenied)
				if ok && c.Reason == reason {
					t.Logf("rbn-approver denied %s: %s: %s", requestedIdentity(got), c.Reason, c.Message)
					return true, ""
				}
				return false, fmt.Sprintf("%+v", got.Status.Conditions)
			})
			refusals++
		}
		// A Node another kubelet runs, under a RemoteBuildNode's name.
		denied(t, nodeIdentityRequest(t, nodeidentity.UserPrefix+foreign, nodeidentity.Group), nodeidentity.ReasonNotServed)
		// A served node's name, with the cluster's admin group.
		denied(t, nodeIdentityRequest(t, nodeidentity.UserPrefix+name, nodeidentity.Group, "system:masters"), nodeidentity.ReasonInvalidRequest)
		// Not a node at all.
		denied(t, nodeIdentityRequest(t, "cluster-admin", nodeidentity.Group), nodeidentity.ReasonInvalidRequest)
	})
}
