package probe

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// runTCP succeeds when a connection to the port opens within the timeout;
// the dial error is the failure's output, as in kubelet.
func runTCP(ctx context.Context, t Target, podIP string, container *corev1.Container, a *corev1.TCPSocketAction, timeout time.Duration) (outcome, string, error) {
	port, err := resolvePort(a.Port, container)
	if err != nil {
		return outcomeUnknown, "", err
	}
	host := a.Host
	if host == "" {
		host = podIP
	}
	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := t.Dial(dialCtx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if errors.Is(err, ErrTransport) {
		return outcomeUnknown, "", err
	}
	if err != nil {
		return outcomeFailure, err.Error(), nil
	}
	// A close error says nothing about whether the port listens.
	_ = conn.Close()
	return outcomeSuccess, "", nil
}
