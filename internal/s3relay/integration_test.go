package s3relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// s3Endpoint is the S3 server hack/s3.sh runs (`eval "$(hack/s3.sh env)"`).
func s3Endpoint(t *testing.T) Endpoint {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	e := Endpoint{URL: os.Getenv("RBN_S3_ENDPOINT"), Region: os.Getenv("RBN_S3_REGION"),
		AccessKeyID: os.Getenv("RBN_S3_ACCESS_KEY"), SecretAccessKey: os.Getenv("RBN_S3_SECRET_KEY"), PathStyle: true}
	if e.URL == "" {
		t.Skip("no S3 server: run `hack/s3.sh up` and `eval \"$(hack/s3.sh env)\"`")
	}
	return e
}

func testBucket(t *testing.T, c *Client) string {
	t.Helper()
	name := fmt.Sprintf("relay-%d", time.Now().UnixNano())
	if _, err := c.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatal(err)
	}
	return name
}

func source(data []byte) Source {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}

func collect(got *bytes.Buffer) Sink {
	return func(_ context.Context, body io.Reader, _ int64) error {
		got.Reset()
		_, err := io.Copy(got, body)
		return err
	}
}

// testClient returns a client of a relay with cfg (no backoff) for the S3 server.
func testClient(t *testing.T, cfg Config) (*Relay, *Client, Endpoint) {
	t.Helper()
	e := s3Endpoint(t)
	cfg.Backoff = func(int) time.Duration { return 0 }
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Client(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return r, c, e
}

func TestIntegrationRoundTrip(t *testing.T) {
	r, c, _ := testClient(t, Config{PartSize: 5 << 20, Concurrency: 2, MaxBuffers: 3})
	bucket := testBucket(t, c)
	sizes := []int{0, 1000, 5 << 20, 17<<20 + 3}
	t.Cleanup(func() {
		total := uint64(0)
		for _, n := range sizes {
			total += uint64(n)
		}
		for _, d := range []Direction{Upload, Download} {
			if st := r.Stats()[d]; st.Succeeded != uint64(len(sizes)) || st.Failed != 0 || st.Bytes != total {
				t.Errorf("%s stats %+v, want %d transfers of %d bytes in all", d, st, len(sizes), total)
			}
		}
	})
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rand.IntN(256))
			}
			key := fmt.Sprintf("obj-%d", size)
			res, err := c.Upload(context.Background(), bucket, key, source(data), nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != int64(size) {
				t.Fatalf("uploaded %d bytes, want %d", res.Bytes, size)
			}
			var got bytes.Buffer
			dres, err := c.Download(context.Background(), bucket, key, collect(&got), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), data) {
				t.Fatalf("downloaded %d bytes differ from the %d uploaded", got.Len(), size)
			}
			t.Logf("upload %s; download %s", res.Checksum, dres.Checksum)
		})
	}
}

// failingReader fails after n bytes, like a stream cut mid-way.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("stream cut")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

// The incomplete uploads of a key that a killed process left are aborted;
// those of other keys, even ones the key is a prefix of, stay.
func TestIntegrationAbortIncomplete(t *testing.T) {
	_, c, _ := testClient(t, Config{})
	bucket := testBucket(t, c)
	start := func(key string) {
		t.Helper()
		if _, err := c.s3.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	start("image.raw")
	start("image.raw")
	start("image.raw.sha256")
	n, err := c.AbortIncomplete(context.Background(), bucket, "image.raw")
	if err != nil || n != 2 {
		t.Fatalf("AbortIncomplete: %d, %v; want the 2 uploads of image.raw", n, err)
	}
	ups, err := c.s3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, u := range ups.Uploads {
		left = append(left, aws.ToString(u.Key))
	}
	if len(left) != 1 || left[0] != "image.raw.sha256" {
		t.Errorf("uploads left: %v, want only image.raw.sha256's", left)
	}
	if n, err := c.AbortIncomplete(context.Background(), bucket, "image.raw"); err != nil || n != 0 {
		t.Errorf("AbortIncomplete again: %d, %v; want nothing to abort", n, err)
	}
}

func TestIntegrationFailuresLeaveNothing(t *testing.T) {
	r, c, e := testClient(t, Config{PartSize: 5 << 20, Attempts: 2})
	bucket := testBucket(t, c)
	attempts := 0
	_, err := c.Upload(context.Background(), bucket, "cut", func(context.Context) (io.ReadCloser, error) {
		attempts++
		return io.NopCloser(&failingReader{n: 12 << 20}), nil
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "stream cut") || attempts != 2 {
		t.Fatalf("cut upload: err %v after %d attempts", err, attempts)
	}
	if _, err := c.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String("cut")}); err == nil {
		t.Error("a cut upload left an object")
	}
	ups, err := c.s3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil || len(ups.Uploads) != 0 {
		t.Errorf("multipart uploads left: %v (%v)", ups, err)
	}

	var got bytes.Buffer
	_, err = c.Download(context.Background(), bucket, "missing", collect(&got), nil)
	if err == nil || !strings.Contains(err.Error(), "NoSuchKey") {
		t.Errorf("missing object: %v", err)
	}
	bad := e
	bad.SecretAccessKey += "x"
	bc, err := r.Client(bad)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bc.Download(context.Background(), bucket, "missing", collect(&got), nil)
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Errorf("wrong credentials: %v", err)
	}
	t.Logf("wrong credentials: %v", err)
}
