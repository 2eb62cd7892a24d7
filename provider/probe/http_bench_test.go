package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkRunHTTP is one httpGet probe against a local server, dialled
// directly: the probe's own cost, without the SSH channel a build host's
// probe opens.
func BenchmarkRunHTTP(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	b.Cleanup(s.Close)
	host, port := splitHostPort(b, s.Listener.Addr().String())
	target := &netTarget{}
	a := &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt(port)}
	c := &corev1.Container{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		got, _, err := runHTTP(ctx, target, host, c, a, time.Second)
		if err != nil || got != outcomeSuccess {
			b.Fatalf("probe: %v %v", got, err)
		}
	}
}
