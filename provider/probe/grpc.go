package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// runGRPC calls grpc.health.v1.Health/Check on the pod IP and port for the
// probe's service: SERVING is a success, anything else (no connection
// within the timeout included) a failure worded as kubelet words it.
func runGRPC(ctx context.Context, t Target, podIP string, a *corev1.GRPCAction, timeout time.Duration) (outcome, string, error) {
	service := ""
	if a.Service != nil {
		service = *a.Service
	}
	addr := net.JoinHostPort(podIP, strconv.Itoa(int(a.Port)))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// A blocking dial, as kubelet's: it tells "no connection within the
	// timeout" apart from a failed health RPC, and so do the messages. gRPC
	// retries a failed dial until the deadline and reports the deadline:
	// a dial that failed on the Target's own way to the host is kept.
	var transportErr error
	var mu sync.Mutex
	conn, err := grpc.DialContext(ctx, addr, //nolint:staticcheck // blocking dial, as kubelet
		grpc.WithUserAgent(userAgent),
		grpc.WithBlock(), //nolint:staticcheck // as above
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := t.Dial(ctx, "tcp", addr)
			if errors.Is(err, ErrTransport) {
				mu.Lock()
				transportErr = err
				mu.Unlock()
			}
			return c, err
		}),
	)
	mu.Lock()
	terr := transportErr
	mu.Unlock()
	if err != nil && terr != nil {
		return outcomeUnknown, "", terr
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return outcomeFailure, fmt.Sprintf("timeout: failed to connect service %q within %v: %+v", addr, timeout, err), nil
		}
		return outcomeFailure, fmt.Sprintf("error: failed to connect service at %q: %+v", addr, err), nil
	}
	defer func() { _ = conn.Close() }()

	resp, err := healthpb.NewHealthClient(conn).Check(metadata.NewOutgoingContext(ctx, metadata.MD{}),
		&healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		if st, ok := status.FromError(err); ok {
			switch st.Code() {
			case codes.Unimplemented:
				return outcomeFailure, fmt.Sprintf("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): %s", st.Message()), nil
			case codes.DeadlineExceeded:
				return outcomeFailure, fmt.Sprintf("timeout: health rpc did not complete within %v", timeout), nil
			}
		}
		return outcomeFailure, fmt.Sprintf("error: health rpc probe failed: %+v", err), nil
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return outcomeFailure, fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String()), nil
	}
	return outcomeSuccess, "service healthy", nil
}
