package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

func TestRunExec(t *testing.T) {
	boom := errors.New("exec session lost")
	tests := []struct {
		name    string
		cmd     []string
		env     []corev1.EnvVar
		exec    func(ctx context.Context, cmd []string, out io.Writer) (int, error)
		timeout time.Duration
		want    Result
		wantOut string
		wantErr error
	}{{
		name: "exit 0 is a success with the output",
		cmd:  []string{"cat", "/tmp/healthy"},
		exec: func(_ context.Context, _ []string, out io.Writer) (int, error) {
			_, _ = io.WriteString(out, "ok\n")
			return 0, nil
		},
		want: Success, wantOut: "ok\n",
	}, {
		name: "another exit is a failure with the output",
		cmd:  []string{"cat", "/tmp/healthy"},
		exec: func(_ context.Context, _ []string, out io.Writer) (int, error) {
			_, _ = io.WriteString(out, "cat: /tmp/healthy: No such file or directory\n")
			return 1, nil
		},
		want: Failure, wantOut: "cat: /tmp/healthy: No such file or directory\n",
	}, {
		name: "output is bounded to 10 KiB",
		cmd:  []string{"yes"},
		exec: func(_ context.Context, _ []string, out io.Writer) (int, error) {
			for range 3 {
				if n, err := io.WriteString(out, strings.Repeat("y", 6<<10)); n != 6<<10 || err != nil {
					return -1, errors.New("limited writer refused output")
				}
			}
			return 1, nil
		},
		want: Failure, wantOut: strings.Repeat("y", 10<<10),
	}, {
		name:    "a command still running at the timeout fails as kubelet words it",
		cmd:     []string{"sleep", "3600"},
		timeout: 50 * time.Millisecond,
		exec: func(ctx context.Context, _ []string, _ io.Writer) (int, error) {
			<-ctx.Done()
			return -1, ctx.Err()
		},
		want: Failure, wantOut: `command "sleep 3600" timed out`,
	}, {
		name: "an exec that could not run is an error",
		cmd:  []string{"true"},
		exec: func(context.Context, []string, io.Writer) (int, error) { return -1, boom },
		want: Unknown, wantErr: boom,
	}, {
		name: "static env variables expand in the command",
		cmd:  []string{"check", "$(PORT)", "$(SECRET)", "$(UNSET)", "$$(PORT)"},
		env: []corev1.EnvVar{{Name: "PORT", Value: "8080"},
			{Name: "SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}},
		exec: func(_ context.Context, cmd []string, out io.Writer) (int, error) {
			_, _ = io.WriteString(out, strings.Join(cmd, "|"))
			return 0, nil
		},
		want: Success, wantOut: "check|8080||$(UNSET)|$(PORT)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Second
			}
			c := &corev1.Container{Name: "app", Env: tt.env}
			h := &corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: tt.cmd}}
			got, out, err := Run(context.Background(), &netTarget{exec: tt.exec}, "cid", "127.0.0.1", c, h, timeout)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want || out != tt.wantOut {
				t.Errorf("Run = %v, %q; want %v, %q", got, out, tt.want, tt.wantOut)
			}
		})
	}
}

func TestRunExecCallerCancelIsAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	target := &netTarget{exec: func(ctx context.Context, _ []string, _ io.Writer) (int, error) {
		cancel()
		<-ctx.Done()
		return -1, ctx.Err()
	}}
	h := &corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}
	got, _, err := Run(ctx, target, "cid", "", &corev1.Container{}, h, time.Minute)
	if got != Unknown || !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, %v; want Unknown, context.Canceled", got, err)
	}
}

func TestRunTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	_, open := splitHostPort(t, l.Addr().String())
	closed := closedPort(t)
	c := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "svc", ContainerPort: int32(open)}}}
	tests := []struct {
		name     string
		action   corev1.TCPSocketAction
		want     Result
		wantOut  string // substring
		wantErr  string
		wantDial string
	}{
		{name: "open port", action: corev1.TCPSocketAction{Port: intstr.FromInt(open)}, want: Success},
		{name: "named port", action: corev1.TCPSocketAction{Port: intstr.FromString("svc")}, want: Success},
		{name: "closed port fails with the dial error", action: corev1.TCPSocketAction{Port: intstr.FromInt(closed)},
			want: Failure, wantOut: "connection refused"},
		{name: "explicit host", action: corev1.TCPSocketAction{Host: "127.0.0.1", Port: intstr.FromInt(open)},
			want: Success},
		{name: "unknown port name errors as kubelet's", action: corev1.TCPSocketAction{Port: intstr.FromString("nope")},
			want: Unknown, wantErr: `strconv.Atoi: parsing "nope": invalid syntax`},
		{name: "port out of range", action: corev1.TCPSocketAction{Port: intstr.FromInt(70000)},
			want: Unknown, wantErr: "invalid port number: 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := &netTarget{}
			h := &corev1.ProbeHandler{TCPSocket: &tt.action}
			got, out, err := Run(context.Background(), target, "cid", "127.0.0.1", c, h, time.Second)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || !strings.Contains(out, tt.wantOut) {
				t.Errorf("Run = %v, %q; want %v containing %q", got, out, tt.want, tt.wantOut)
			}
		})
	}
}

func TestRunWithoutHandlerErrors(t *testing.T) {
	for name, h := range map[string]*corev1.ProbeHandler{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			got, _, err := Run(context.Background(), &netTarget{}, "cid", "127.0.0.1", &corev1.Container{Name: "app"}, h, time.Second)
			if got != Unknown || !errors.Is(err, ErrNoHandler) {
				t.Errorf("Run = %v, %v; want Unknown, ErrNoHandler", got, err)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "a", "EMPTY": ""}
	for in, want := range map[string]string{
		"$(A)":      "a",
		"x$(A)y":    "xay",
		"$(EMPTY)":  "",
		"$(B)":      "$(B)",
		"$$(A)":     "$(A)",
		"$$":        "$",
		"$":         "$",
		"a$b":       "a$b",
		"$()":       "$()",
		"$(A":       "$(A",
		"$(A $$":    "$(A $",
		"$(A $$(A)": "$(A $$(A)", // the first ) closes the name
		"$(A)$(A)":  "aa",
	} {
		if got := pod.Expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// transportDown is a Target whose own way to the host is down.
type transportDown struct{ netTarget }

func (*transportDown) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, fmt.Errorf("%w: SSHNotConnected 127.0.1.2:22: no ssh connection", ErrTransport)
}

// A probe that could not be made because the Target's way to the host is
// down is an errored attempt (thrown away), not a failure of the pod, for
// every kind that dials.
func TestRunThrowsAwayATransportFailure(t *testing.T) {
	for name, h := range map[string]*corev1.ProbeHandler{
		"tcp":  {TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(22)}},
		"http": {HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt(80), Path: "/"}},
		"grpc": {GRPC: &corev1.GRPCAction{Port: 50051}},
	} {
		t.Run(name, func(t *testing.T) {
			got, out, err := Run(context.Background(), &transportDown{}, "cid", "100.96.1.53", &corev1.Container{}, h, time.Second)
			if got != Unknown || !errors.Is(err, ErrTransport) {
				t.Errorf("Run = %v, %q, %v; want Unknown with ErrTransport", got, out, err)
			}
		})
	}
}
