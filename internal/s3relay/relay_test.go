package s3relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/remote-build-nodes/rbn/internal/egress"
)

func responseError(code int) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("x")}}
}

func TestRetryable(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"broken stream", context.Background(), errors.New("connection reset"), true},
		{"no response", context.Background(), responseError(0), true},
		{"server error", context.Background(), responseError(503), true},
		{"throttled", context.Background(), responseError(429), true},
		{"forbidden", context.Background(), responseError(403), false},
		{"not found", context.Background(), responseError(404), false},
		{"permanent", context.Background(), Permanent(errors.New("bad archive")), false},
		{"refused address", context.Background(), fmt.Errorf("dial: %w", &egress.DeniedError{Address: "169.254.169.254:80"}), false},
		{"cancelled", cancelled, errors.New("connection reset"), false},
	} {
		if got := retryable(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: retryable %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBufferPoolBoundsMemory(t *testing.T) {
	r, err := New(Config{PartSize: 5 << 20, MaxBuffers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.MemoryBound() != 10<<20 {
		t.Errorf("bound %d", r.MemoryBound())
	}
	a, _ := r.getBuf(context.Background())
	b, _ := r.getBuf(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.getBuf(ctx); err == nil {
		t.Fatal("a third buffer was handed out beyond MaxBuffers")
	}
	r.putBuf(a)
	c, err := r.getBuf(context.Background())
	if err != nil || &c[0] != &a[0] {
		t.Errorf("a released buffer was not reused (%v)", err)
	}
	r.putBuf(b)
	r.putBuf(c)
}

// An attempt that failed while the host was gone does not count: the
// transfer starts over once the host is back, at once, up to maxHostWaits
// times; one that failed with the host there counts and backs off.
func TestAttemptWaitsForTheHost(t *testing.T) {
	r, err := New(Config{Attempts: 2, Backoff: func(int) time.Duration { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	cut := errors.New("ssh: connection lost")
	for _, tc := range []struct {
		name      string
		gone      []bool // what HostWait finds after each failure, in order
		failures  int    // attempts that fail before one succeeds; -1: all
		waitErr   error
		wantTries int
		wantErr   string
	}{
		{name: "host gone twice, then a success", gone: []bool{true, true}, failures: 2, wantTries: 3},
		{name: "host there: attempts count", gone: []bool{false, false}, failures: -1, wantTries: 2, wantErr: "ssh: connection lost"},
		{name: "gone then there: one counted", gone: []bool{true, false, false}, failures: -1, wantTries: 3, wantErr: "ssh: connection lost"},
		{name: "host keeps dropping", gone: []bool{true, true, true, true, true, true, true, true}, failures: -1,
			wantTries: maxHostWaits + 2, wantErr: "ssh: connection lost"},
		{name: "host not back in time", gone: []bool{true}, failures: -1, waitErr: errors.New("the host did not come back within 5m0s"),
			wantTries: 1, wantErr: "ssh: connection lost; the host did not come back within 5m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waits := 0
			c := (&Client{r: r}).WithHostWait(func(context.Context) (bool, error) {
				defer func() { waits++ }()
				if tc.waitErr != nil {
					return true, tc.waitErr
				}
				return waits < len(tc.gone) && tc.gone[waits], nil
			})
			tries := 0
			n, err := c.attempt(context.Background(), func() error {
				tries++
				if tc.failures < 0 || tries <= tc.failures {
					return cut
				}
				return nil
			})
			if n != tries || n != tc.wantTries {
				t.Errorf("attempt made %d tries (reported %d), want %d", tries, n, tc.wantTries)
			}
			if (err == nil) != (tc.wantErr == "") || err != nil && err.Error() != tc.wantErr {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}
