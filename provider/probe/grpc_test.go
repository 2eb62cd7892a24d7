package probe

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// grpcServer serves on 127.0.0.1, with the standard health service when
// withHealth; it returns the port.
func grpcServer(t *testing.T, withHealth bool) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if withHealth {
		hs := health.NewServer()
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
		healthpb.RegisterHealthServer(s, hs)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	_, port := splitHostPort(t, l.Addr().String())
	return port
}

func TestRunGRPC(t *testing.T) {
	healthy := grpcServer(t, true)
	bare := grpcServer(t, false)
	closed := closedPort(t)
	tests := []struct {
		name    string
		port    int
		service *string
		timeout time.Duration
		want    Result
		wantOut string // prefix
	}{
		{name: "SERVING is a success", port: healthy, want: Success, wantOut: "service healthy"},
		{name: "service NOT_SERVING", port: healthy, service: ptr.To("db"),
			want: Failure, wantOut: `service unhealthy (responded with "NOT_SERVING")`},
		{name: "unknown service", port: healthy, service: ptr.To("nope"),
			want: Failure, wantOut: "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"},
		{name: "no health service", port: bare,
			want: Failure, wantOut: "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service grpc.health.v1.Health"},
		{name: "nothing listening", port: closed, timeout: 300 * time.Millisecond,
			want: Failure, wantOut: fmt.Sprintf(`timeout: failed to connect service "127.0.0.1:%d" within 300ms: `, closed)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			target := &netTarget{}
			h := &corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(tt.port), Service: tt.service}}
			got, out, err := Run(context.Background(), target, "cid", "127.0.0.1", &corev1.Container{}, h, timeout)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || !strings.HasPrefix(out, tt.wantOut) {
				t.Errorf("Run = %v, %q; want %v, %q...", got, out, tt.want, tt.wantOut)
			}
			want := fmt.Sprintf("127.0.0.1:%d", tt.port)
			for _, d := range target.dialed() {
				if d != want {
					t.Errorf("dialed %s, want %s", d, want)
				}
			}
			if len(target.dialed()) == 0 {
				t.Error("no connection went through the target")
			}
		})
	}
}
