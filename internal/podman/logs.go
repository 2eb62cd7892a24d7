package podman

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/containers/podman/v5/pkg/bindings"
)

// LogOptions select what Logs returns.
type LogOptions struct {
	Follow     bool
	Tail       int // < 0: all
	Since      time.Time
	Timestamps bool
	// TTY: the container has a terminal. Informational: the libpod logs
	// endpoint frames every stream (stdout/stderr headers) all the same.
	TTY bool
}

// Logs streams a container's stdout and stderr, in order, as one stream.
// With Follow it ends when the container exits or ctx ends.
func (c *Client) Logs(ctx context.Context, name string, o LogOptions) (_ io.ReadCloser, err error) {
	cctx, end, err := c.call(ctx, opLogs)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	conn, err := bindings.GetClient(cctx)
	if err != nil {
		return nil, &APIError{Op: "logs", Err: err}
	}
	q := url.Values{}
	q.Set("stdout", "true")
	q.Set("stderr", "true")
	q.Set("follow", strconv.FormatBool(o.Follow))
	q.Set("timestamps", strconv.FormatBool(o.Timestamps))
	if o.Tail >= 0 {
		q.Set("tail", strconv.Itoa(o.Tail))
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.Format(time.RFC3339Nano))
	}
	resp, err := conn.DoRequest(cctx, nil, http.MethodGet, "/containers/%s/logs", q, nil, name)
	if err != nil {
		return nil, wrap("logs "+name, err)
	}
	if !resp.IsSuccess() {
		defer resp.Body.Close()
		return nil, wrap("logs "+name, resp.Process(nil))
	}
	pr, pw := io.Pipe()
	go func() {
		defer resp.Body.Close()
		pw.CloseWithError(demux(pw, resp.Body))
	}()
	return pr, nil
}

// demux copies the payload of a docker-style multiplexed stream (8-byte
// headers: stream, 3 zero bytes, big-endian length) to w. Podman sends a
// frame per log line: frames are gathered while more are at hand and
// written when the stream pauses, so a large log moves in large writes and
// a followed one line by line.
func demux(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64*1024)
	bw := bufio.NewWriterSize(w, 64*1024)
	var hdr [8]byte
	for {
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return bw.Flush()
			}
			return err
		}
		switch hdr[0] {
		case 0, 1, 2, 3:
		default:
			return fmt.Errorf("logs: bad stream header %v", hdr)
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.CopyN(bw, br, n); err != nil {
			return err
		}
	}
}
