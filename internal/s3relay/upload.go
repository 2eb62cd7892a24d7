package s3relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Source opens the content to upload; it is called again, from the start,
// for each attempt.
type Source func(ctx context.Context) (io.ReadCloser, error)

// Upload streams the source to s3://bucket/key, replacing any object there
// only once the whole content has arrived and been verified.
//
// Content that fits in one part goes up with one PutObject; anything larger
// as a multipart upload whose parts carry their CRC32, which S3 checks, and
// whose completion carries the CRC32 of the whole stream as read from the
// source (a FULL_OBJECT checksum), which S3 checks against the parts it
// stored. Any failure, or ctx ending, aborts the multipart upload: no partial
// object is left.
func (c *Client) Upload(ctx context.Context, bucket, key string, src Source, progress Progress) (Result, error) {
	var res Result
	start := time.Now()
	n, err := c.attempt(ctx, func() error {
		r, err := c.uploadOnce(ctx, bucket, key, src, progress)
		res = r
		return err
	})
	res.Attempts = n
	c.r.stats.record(Upload, res, time.Since(start), err)
	if err != nil {
		return res, describe("upload", bucket, key, err)
	}
	return res, nil
}

// unsignedPayload spares hashing every byte with SHA-256 for the request
// signature: each part's CRC32 travels in a signed header and S3 checks the
// body against it, the integrity model of the SDK's own default (an
// unsigned payload with a checksum trailer, which not every server reads).
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

func crcString(sum uint32) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum))
}

// brokenSource is an error of the source itself, as sourceReader reports
// it. io.ReadFull answers io.ErrUnexpectedEOF for the short last part of a
// source that ended well, and passes a source's own io.ErrUnexpectedEOF
// on as it is: a stream cut in the middle (a tar entry shorter than its
// header says, when the host's connection broke) would pass for the end of
// the object, and a truncated object would be stored as a whole one.
type brokenSource struct{ err error }

func (e *brokenSource) Error() string { return e.err.Error() }
func (e *brokenSource) Unwrap() error { return e.err }

// sourceReader wraps every error of its source but io.EOF in brokenSource.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF { //nolint:errorlint // io.EOF itself, as Read returns it
		err = &brokenSource{err}
	}
	return n, err
}

// readPart fills buf from a sourceReader; last says the source ended
// (well) within it, after n bytes. A source's own error is an error, never
// the short last part.
func readPart(r sourceReader, buf []byte) (n int, last bool, err error) {
	n, err = io.ReadFull(r, buf)
	var broken *brokenSource
	switch {
	case errors.As(err, &broken):
		return n, false, fmt.Errorf("read source: %w", broken.err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return n, true, nil
	case err != nil:
		return n, false, fmt.Errorf("read source: %w", err)
	}
	return n, false, nil
}

func (c *Client) uploadOnce(ctx context.Context, bucket, key string, src Source, progress Progress) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, err := src(ctx)
	if err != nil {
		return Result{}, err
	}
	defer rc.Close()
	buf, err := c.r.getBuf(ctx)
	if err != nil {
		return Result{}, err
	}
	in := sourceReader{rc}
	n, last, err := readPart(in, buf)
	if err != nil {
		c.r.putBuf(buf)
		return Result{}, err
	}
	if last {
		defer c.r.putBuf(buf)
		return c.putSmall(ctx, bucket, key, buf[:n], progress)
	}
	return c.putMultipart(ctx, bucket, key, in, buf, progress)
}

func (c *Client) putSmall(ctx context.Context, bucket, key string, data []byte, progress Progress) (Result, error) {
	sum := crcString(crc32.ChecksumIEEE(data))
	out, err := c.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ChecksumCRC32: aws.String(sum),
	}, unsignedPayload)
	if err != nil {
		return Result{}, err
	}
	if got := aws.ToString(out.ChecksumCRC32); got != "" && got != sum {
		return Result{}, fmt.Errorf("%w: S3 stored CRC32 %s, sent %s", ErrIntegrity, got, sum)
	}
	if progress != nil {
		progress(int64(len(data)))
	}
	return Result{Bytes: int64(len(data)), Checksum: "crc32 " + sum}, nil
}

// putMultipart uploads first (a full part) and the rest of rc.
func (c *Client) putMultipart(ctx context.Context, bucket, key string, rc sourceReader, first []byte, progress Progress) (res Result, err error) {
	created, err := c.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, ChecksumType: types.ChecksumTypeFullObject,
	})
	if err != nil {
		c.r.putBuf(first)
		return Result{}, err
	}
	id := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		if aerr := c.abort(ctx, bucket, key, id); aerr != nil {
			err = fmt.Errorf("%w (and aborting upload %s failed: %v)", err, aws.ToString(id), aerr)
		}
	}()

	// stop ends the reading and sending of parts at the first failure. The
	// parts already sent are not cancelled with it (only by ctx): a part
	// whose request is cut while S3 stores it may be stored after the
	// abort, which S3 then keeps as an upload nobody completes.
	stop, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		parts    []types.CompletedPart
		sent     int64
		inFlight = make(chan struct{}, c.r.cfg.Concurrency)
	)
	full := crc32.NewIEEE()
	var total int64
	buf, n := first, len(first)
	for part := int32(1); ; part++ {
		if part > MaxParts {
			c.r.putBuf(buf)
			cancel(fmt.Errorf("content exceeds %d parts of %d bytes", MaxParts, c.r.cfg.PartSize))
			break
		}
		data := buf[:n]
		full.Write(data)
		total += int64(n)
		select {
		case inFlight <- struct{}{}:
		case <-stop.Done():
			c.r.putBuf(buf)
		}
		if stop.Err() != nil {
			break
		}
		wg.Add(1)
		go func(part int32, buf, data []byte) {
			defer wg.Done()
			defer func() { <-inFlight }()
			defer c.r.putBuf(buf)
			sum := crcString(crc32.ChecksumIEEE(data))
			out, err := c.s3.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id, PartNumber: aws.Int32(part),
				Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ChecksumCRC32: aws.String(sum),
			}, unsignedPayload)
			if err == nil && aws.ToString(out.ChecksumCRC32) != "" && aws.ToString(out.ChecksumCRC32) != sum {
				err = fmt.Errorf("%w: part %d stored with CRC32 %s, sent %s", ErrIntegrity, part, aws.ToString(out.ChecksumCRC32), sum)
			}
			if err != nil {
				cancel(fmt.Errorf("part %d: %w", part, err))
				return
			}
			mu.Lock()
			parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(part), ETag: out.ETag, ChecksumCRC32: aws.String(sum)})
			sent += int64(len(data))
			s := sent
			mu.Unlock()
			if progress != nil {
				progress(s)
			}
		}(part, buf, data)
		if n < len(buf) {
			break // that was the last, short part
		}
		if buf, err = c.r.getBuf(stop); err != nil {
			break
		}
		var last bool
		n, last, err = readPart(rc, buf)
		switch {
		case err != nil:
			c.r.putBuf(buf)
			cancel(err)
		case last && n == 0:
			c.r.putBuf(buf)
		default:
			continue // a whole part, or the short last one
		}
		break
	}
	wg.Wait()
	if cause := context.Cause(stop); cause != nil {
		return Result{}, cause
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(*a.PartNumber - *b.PartNumber) })
	sum := crcString(full.Sum32())
	out, err := c.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		ChecksumCRC32:   aws.String(sum), ChecksumType: types.ChecksumTypeFullObject, MpuObjectSize: aws.Int64(total),
	})
	if err != nil {
		return Result{}, err
	}
	if got := aws.ToString(out.ChecksumCRC32); got != "" && got != sum {
		// Completed, yet not what was read: do not leave it behind.
		_, _ = c.s3.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		return Result{}, Permanent(fmt.Errorf("%w: S3 stored CRC32 %s, read %s", ErrIntegrity, got, sum))
	}
	return Result{Bytes: total, Checksum: "crc32 " + sum + " (full object)"}, nil
}

// AbortIncomplete aborts the incomplete multipart uploads of exactly
// s3://bucket/key and returns how many it aborted. Upload never leaves one
// behind itself, but a process killed in the middle of one does (the
// takeover of a node from a replica killed with SIGKILL): the caller that
// owns the key calls this before uploading it again. S3 keeps an
// incomplete upload's parts, and bills them, until it is aborted.
func (c *Client) AbortIncomplete(ctx context.Context, bucket, key string) (int, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)}
	aborted := 0
	for {
		out, err := c.s3.ListMultipartUploads(ctx, in)
		if err != nil {
			return aborted, describe("list the incomplete uploads of", bucket, key, err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != key {
				continue // a longer key with this one as its prefix
			}
			if err := c.abort(ctx, bucket, key, u.UploadId); err != nil {
				return aborted, describe("abort an incomplete upload of", bucket, key, err)
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) {
			return aborted, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// abortAttempts bounds abort: S3 documents that a part being stored when its
// upload is aborted may still be stored, and that the upload must then be
// aborted again until listing its parts reports it gone.
const abortAttempts = 4

// abort removes the multipart upload id and makes sure it is gone. It runs
// even when ctx has ended: a cancelled transfer must still be cleaned up.
func (c *Client) abort(ctx context.Context, bucket, key string, id *string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for n := 1; ; n++ {
		_, err := c.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id})
		if err != nil && !noSuchUpload(err) {
			return err
		}
		_, err = c.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: id, MaxParts: aws.Int32(1)})
		switch {
		case noSuchUpload(err):
			return nil
		case err != nil:
			return fmt.Errorf("check the upload is gone: %w", err)
		case n == abortAttempts:
			return fmt.Errorf("upload still listed after %d aborts", n)
		}
		if !c.backOff(ctx, n) {
			return ctx.Err()
		}
	}
}

func noSuchUpload(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "NoSuchUpload"
}
