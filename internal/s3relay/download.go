package s3relay

import (
	"context"
	"crypto/md5" //nolint:gosec // S3's ETag of a single-part object is its MD5: the only check some objects offer.
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Sink consumes one attempt's object body (size bytes). It must read body
// to its end: the integrity check happens there. It is called again from
// scratch when an attempt fails, so it must overwrite what it wrote before.
type Sink func(ctx context.Context, body io.Reader, size int64) error

var plainETag = regexp.MustCompile(`^"?[0-9a-f]{32}"?$`)

// Download streams s3://bucket/key into sink, verified end to end: the
// length S3 announced, and the object's full-object checksum (validated by
// the SDK as the body is read) or, for an object without one, its MD5 ETag.
// An object whose only checksum is a multipart composite is checked by
// length alone (Result.Checksum says so).
func (c *Client) Download(ctx context.Context, bucket, key string, sink Sink, progress Progress) (Result, error) {
	var res Result
	start := time.Now()
	n, err := c.attempt(ctx, func() error {
		r, err := c.downloadOnce(ctx, bucket, key, sink, progress)
		res = r
		return err
	})
	res.Attempts = n
	c.r.stats.record(Download, res, time.Since(start), err)
	if err != nil {
		return res, describe("download", bucket, key, err)
	}
	return res, nil
}

func (c *Client) downloadOnce(ctx context.Context, bucket, key string, sink Sink, progress Progress) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return Result{}, err
	}
	defer out.Body.Close()
	size := aws.ToInt64(out.ContentLength)
	body := &verifyingReader{r: out.Body, want: size, progress: progress}
	res := Result{Bytes: size}
	switch {
	case fullObjectChecksum(out) != "":
		res.Checksum = fullObjectChecksum(out) + " (verified by the SDK)"
	case plainETag.MatchString(aws.ToString(out.ETag)):
		body.md5, body.wantMD5 = md5.New(), strings.Trim(aws.ToString(out.ETag), `"`) //nolint:gosec
		res.Checksum = "md5 " + body.wantMD5
	default:
		// The pod's Downloaded event carries this: its user should know the
		// content was not checked.
		res.Checksum = LengthOnly
	}
	if err := sink(ctx, body, size); err != nil {
		if body.err != nil {
			// The sink failed because the body did: report the cause.
			return res, body.err
		}
		return res, err
	}
	if body.err != nil {
		return res, body.err
	}
	if !body.eof {
		// The sink stopped early: read the rest so that the check runs.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return res, err
		}
		if body.err != nil {
			return res, body.err
		}
	}
	return res, nil
}

func fullObjectChecksum(out *s3.GetObjectOutput) string {
	if out.ChecksumType == types.ChecksumTypeComposite {
		return ""
	}
	for _, c := range []struct{ name, v string }{
		{"crc64nvme", aws.ToString(out.ChecksumCRC64NVME)}, {"crc32", aws.ToString(out.ChecksumCRC32)},
		{"crc32c", aws.ToString(out.ChecksumCRC32C)}, {"sha256", aws.ToString(out.ChecksumSHA256)}, {"sha1", aws.ToString(out.ChecksumSHA1)},
	} {
		if c.v != "" && !strings.Contains(c.v, "-") {
			return c.name + " " + c.v
		}
	}
	return ""
}

// LengthOnly is Result.Checksum of a download that had no checksum to verify
// (neither a full-object checksum nor a plain MD5 ETag, as for a multipart
// upload's composite checksum): only its length was.
const LengthOnly = "verified by length only (no checksum)"

// ErrIntegrity is a downloaded object that is not what S3 said it is.
var ErrIntegrity = errors.New("integrity check failed")

// verifyingReader counts the body, reports progress, and at its end checks
// the length and (when set) the MD5. Errors are kept to tell the body's
// failures from the sink's.
type verifyingReader struct {
	r        io.Reader
	want     int64
	n        int64
	md5      hash.Hash
	wantMD5  string
	progress Progress
	eof      bool
	err      error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.eof {
		return 0, io.EOF
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.md5 != nil {
		v.md5.Write(p[:n])
	}
	if n > 0 && v.progress != nil {
		v.progress(v.n)
	}
	switch {
	case v.n > v.want:
		v.err = fmt.Errorf("%w: more than the announced %d bytes", ErrIntegrity, v.want)
	case err == io.EOF && v.n < v.want:
		v.err = fmt.Errorf("%w: body ended after %d of %d bytes", ErrIntegrity, v.n, v.want)
	case err == io.EOF && v.md5 != nil && hex.EncodeToString(v.md5.Sum(nil)) != v.wantMD5:
		v.err = fmt.Errorf("%w: MD5 %x, ETag says %s", ErrIntegrity, v.md5.Sum(nil), v.wantMD5)
	case err == io.EOF:
		v.eof = true
		return n, io.EOF
	case err != nil:
		v.err = fmt.Errorf("read object body: %w", err)
	}
	if v.err != nil {
		return n, v.err
	}
	return n, nil
}
