package s3relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

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
