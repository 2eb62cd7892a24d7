package s3relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/egress"
)

// Defaults of Config.
const (
	DefaultPartSize    = 8 << 20 // x 10,000 parts: objects up to 78 GiB
	DefaultConcurrency = 4
	DefaultMaxBuffers  = 8 // 64 MiB of part buffers for the whole process
	DefaultAttempts    = 3
	// MaxParts is S3's limit on the parts of one multipart upload.
	MaxParts = 10000
)

// Config configures a Relay.
type Config struct {
	// PartSize is the size of each uploaded part but the last (S3 wants
	// at least 5 MiB). Default DefaultPartSize.
	PartSize int
	// Concurrency is how many parts of one upload are in flight. Default DefaultConcurrency.
	Concurrency int
	// MaxBuffers bounds the part buffers of all uploads together: the
	// relay's memory for data is MaxBuffers x PartSize. Default DefaultMaxBuffers.
	MaxBuffers int
	// Attempts is how many times a whole transfer is tried when its stream
	// breaks or the service keeps failing (each request is also retried by
	// the SDK). Default DefaultAttempts.
	Attempts int
	// Backoff is the wait before attempt n+1 (n >= 1). Default 2^(n-1) seconds.
	Backoff func(n int) time.Duration
	Clock   clock.Clock
	// Egress is where the relay may connect: an endpoint comes from a pod's
	// user, who must not reach rbn-kubelet's own network neighbours through
	// it. Nil: anywhere (tools and tests; rbn-kubelet always sets one).
	Egress *egress.Policy
}

// Relay moves objects; one Relay serves a whole process so that its
// buffer pool bounds the memory of all transfers together.
type Relay struct {
	cfg   Config
	sem   chan struct{}
	free  chan []byte
	stats stats
}

// New returns a Relay.
func New(cfg Config) (*Relay, error) {
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxBuffers == 0 {
		cfg.MaxBuffers = DefaultMaxBuffers
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(n int) time.Duration { return time.Duration(1<<min(n-1, 5)) * time.Second }
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	switch {
	case cfg.PartSize < 5<<20:
		return nil, fmt.Errorf("s3relay: part size %d is below S3's minimum of 5 MiB", cfg.PartSize)
	case cfg.Concurrency < 1 || cfg.MaxBuffers < 1 || cfg.Attempts < 1:
		return nil, errors.New("s3relay: concurrency, buffers and attempts must be positive")
	}
	return &Relay{cfg: cfg, sem: make(chan struct{}, cfg.MaxBuffers), free: make(chan []byte, cfg.MaxBuffers)}, nil
}

// MemoryBound is the most memory the relay's part buffers take.
func (r *Relay) MemoryBound() int64 { return int64(r.cfg.MaxBuffers) * int64(r.cfg.PartSize) }

// getBuf takes a part buffer from the pool, waiting for one to be free.
func (r *Relay) getBuf(ctx context.Context) ([]byte, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case b := <-r.free:
		return b, nil
	default:
		return make([]byte, r.cfg.PartSize), nil
	}
}

func (r *Relay) putBuf(b []byte) {
	select {
	case r.free <- b:
	default:
	}
	<-r.sem
}

// Client is a Relay bound to one endpoint and its credentials.
type Client struct {
	r        *Relay
	s3       *s3.Client
	tr       *http.Transport
	hostWait HostWait
}

// HostWait is asked after each failed attempt whether the other end of the
// transfer (the build host, whose files a sink writes or a source reads
// over SSH) is gone, and if so waits until it is back. waited says it was
// gone: that attempt does not count against Attempts, since the host's
// outage is not the transfer's failure (the next attempt starts over). An
// error ends the transfer: the host did not come back in time.
type HostWait func(ctx context.Context) (waited bool, err error)

// maxHostWaits bounds the attempts a transfer makes after waiting for its
// host, on top of Attempts: a host that keeps dropping its connection
// fails the transfer.
const maxHostWaits = 5

// WithHostWait makes the client wait for the host through w after a failed
// attempt; it returns c.
func (c *Client) WithHostWait(w HostWait) *Client {
	c.hostWait = w
	return c
}

// Client returns a client for e; Close releases its connections.
func (r *Relay) Client(e Endpoint) (*Client, error) {
	c, tr, err := newS3Client(&e, 3, r.cfg.Egress)
	if err != nil {
		return nil, err
	}
	return &Client{r: r, s3: c, tr: tr}, nil
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Progress is told the bytes transferred so far.
type Progress func(bytes int64)

// Result describes a finished transfer.
type Result struct {
	Bytes int64
	// Checksum is how the content was verified, e.g. "crc32 AbCd==", or
	// LengthOnly.
	Checksum string
	Attempts int
}

// permanentError is an error that another attempt cannot cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err (from a sink or source) as not worth another attempt.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// retryable tells whether another attempt of the whole transfer may succeed.
func retryable(ctx context.Context, err error) bool {
	var p *permanentError
	var d *egress.DeniedError
	switch {
	case ctx.Err() != nil, errors.As(err, &p), errors.As(err, &d):
		return false
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		code := re.HTTPStatusCode()
		// 0: no response at all (the connection broke).
		return code == 0 || code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
	}
	return true
}

// describe shortens the SDK's errors to what a user needs: the operation,
// the object, S3's code and message.
func describe(op, bucket, key string, err error) error {
	obj := "s3://" + bucket + "/" + key
	var denied *egress.DeniedError
	if errors.As(err, &denied) {
		// The SDK's wrapping (operation, retries, the URL) hides the point.
		return &TransferError{Op: op, Object: obj, Err: err, Detail: denied.Error()}
	}
	var api smithy.APIError
	var re *awshttp.ResponseError
	if errors.As(err, &api) && errors.As(err, &re) {
		msg := api.ErrorMessage()
		if msg == "" {
			msg = http.StatusText(re.HTTPStatusCode())
		}
		return &TransferError{Op: op, Object: obj, Err: err, Detail: fmt.Sprintf("%s (HTTP %d): %s", api.ErrorCode(), re.HTTPStatusCode(), msg)}
	}
	return &TransferError{Op: op, Object: obj, Err: err, Detail: err.Error()}
}

// TransferError is a failed transfer of one object.
type TransferError struct {
	Op     string // "download" or "upload"
	Object string // s3://bucket/key
	Detail string
	Err    error
}

func (e *TransferError) Error() string { return e.Op + " " + e.Object + ": " + e.Detail }
func (e *TransferError) Unwrap() error { return e.Err }

// attempt runs fn up to Attempts times while its failures are retryable;
// the attempts that failed while the host was gone (see HostWait) do not
// count, up to maxHostWaits of them. It returns how many attempts it made.
func (c *Client) attempt(ctx context.Context, fn func() error) (int, error) {
	var err error
	counted, waits := 0, 0
	for n := 1; ; n++ {
		if err = fn(); err == nil || !retryable(ctx, err) {
			return n, err
		}
		if c.hostWait != nil && waits < maxHostWaits {
			waited, werr := c.hostWait(ctx)
			if werr != nil {
				return n, fmt.Errorf("%w; %v", err, werr)
			}
			if waited {
				waits++
				continue // the host is back: start over, at once
			}
		}
		if counted++; counted >= c.r.cfg.Attempts {
			return n, err
		}
		if !c.backOff(ctx, counted) {
			return n, err
		}
	}
}

// backOff waits the back-off after the n-th failed try; false if ctx ended first.
func (c *Client) backOff(ctx context.Context, n int) bool {
	t := c.r.cfg.Clock.NewTimer(c.r.cfg.Backoff(n))
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-t.C():
		return true
	}
}
