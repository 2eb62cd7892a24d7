package framework

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// NodeScraperToken is a token, valid for valid, of a new service account
// in ns that may read every node's kubelet API as monitoring agents
// (kube-prometheus's Prometheus, metrics-server) may: get on nodes/metrics,
// nodes/stats and nodes/proxy, through a ClusterRole and binding named
// role and labelled labels. It returns once the apiserver says the account
// is allowed: the kubelet API checks each request with a
// SubjectAccessReview and keeps a denial for a while, so a token used
// before the binding took effect would fail. stop deletes the ClusterRole
// and its binding (the account goes with ns).
func (s *Stack) NodeScraperToken(ctx context.Context, ns, account, role string, labels map[string]string, valid time.Duration) (token string, stop func(), err error) {
	if _, err := s.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: account},
	}, metav1.CreateOptions{}); err != nil {
		return "", nil, fmt.Errorf("create service account %s/%s: %w", ns, account, err)
	}
	rbac := s.Client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: role, Labels: labels},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"nodes/metrics", "nodes/stats", "nodes/proxy"}, Verbs: []string{"get"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		return "", nil, fmt.Errorf("create ClusterRole %s: %w", role, err)
	}
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = rbac.ClusterRoleBindings().Delete(ctx, role, metav1.DeleteOptions{})
		_ = rbac.ClusterRoles().Delete(ctx, role, metav1.DeleteOptions{})
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: account, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		stop()
		return "", nil, fmt.Errorf("create ClusterRoleBinding %s: %w", role, err)
	}
	user := "system:serviceaccount:" + ns + ":" + account
	err = Poll(ctx, user+" to be allowed nodes/metrics", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		sar, err := s.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               user,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "metrics"},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return sar.Status.Allowed, sar.Status.Reason
	})
	if err != nil {
		stop()
		return "", nil, err
	}
	tr, err := s.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, account, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(valid.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("request a token of %s: %w", user, err)
	}
	return tr.Status.Token, stop, nil
}
