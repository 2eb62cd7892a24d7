package podman

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// streamAPIPrefix is the libpod API version the streaming calls ask for:
// every podman from 4.0 on serves it, the 4.3 of Debian 12 hosts included.
const streamAPIPrefix = "/v4.0.0/libpod"

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width  uint16
	Height uint16
}

// rawStream is a connection podman switched to raw streaming (exec start,
// attach). Reads come first from what the response reader buffered.
type rawStream struct {
	conn net.Conn
	r    *bufio.Reader

	closeOnce sync.Once
}

func (s *rawStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *rawStream) Write(p []byte) (int, error) { return s.conn.Write(p) }

// CloseWrite tells podman that no more input comes: the process's stdin
// reaches EOF. An SSH channel supports it; without it the only way is Close.
func (s *rawStream) CloseWrite() error {
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (s *rawStream) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.conn.Close() })
	return err
}

// upgrade sends a request that asks podman to take the connection over for
// raw streaming and returns the stream once it did. Each session dials its
// own stream instead of using the bindings: their attach and exec replace
// the transport of the connection they run on, which would race with every
// other call on the host's shared connection. The call of op ends when
// the stream is open (or failed to); what names it in errors.
func (c *Client) upgrade(ctx context.Context, op, what, path string, query url.Values, body any) (_ *rawStream, err error) {
	defer c.begin(op)(&err)
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		payload = b
	}
	u := url.URL{Path: streamAPIPrefix + path, RawQuery: query.Encode()}
	req, err := http.NewRequest(http.MethodPost, "http://d"+u.RequestURI(), bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "tcp")
	conn, br, resp, err := c.open(ctx, what, req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusSwitchingProtocols, http.StatusOK:
		// 200: podman streams on the same connection without the upgrade.
		return &rawStream{conn: conn, r: br}, nil
	}
	defer conn.Close()
	return nil, responseError(what, resp)
}

// open sends req on a connection of its own to the host's podman socket,
// dialed over the host's SSH connection (not through the local forward the
// bindings use), and returns the connection, its reader and podman's
// response once its head came. ctx's end cuts the connection until then;
// the caller owns it after.
func (c *Client) open(ctx context.Context, what string, req *http.Request) (net.Conn, *bufio.Reader, *http.Response, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := c.cfg.Dial(dctx)
	if err != nil {
		return nil, nil, nil, &APIError{Op: what, Err: err}
	}
	// Until podman answered, ctx's end must cut the connection.
	stop := context.AfterFunc(dctx, func() { _ = conn.Close() })
	if err := req.Write(conn); err != nil {
		stop()
		conn.Close()
		return nil, nil, nil, &APIError{Op: what, Err: err}
	}
	br := bufio.NewReaderSize(conn, 32*1024)
	resp, err := http.ReadResponse(br, req)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = dctx.Err()
		}
		return nil, nil, nil, &APIError{Op: what, Err: err}
	}
	return conn, br, resp, nil
}

// responseError is podman's refusal in resp: its message, and the status.
func responseError(what string, resp *http.Response) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	var model struct {
		Message string `json:"message"`
		Cause   string `json:"cause"`
	}
	text := string(bytes.TrimSpace(msg))
	if json.Unmarshal(msg, &model) == nil && model.Message != "" {
		text = model.Message
	}
	return &APIError{Op: what, Status: resp.StatusCode, Err: fmt.Errorf("%s (HTTP %s)", text, strconv.Itoa(resp.StatusCode))}
}

// copyOutput copies a session's output to stdout and stderr: raw when the
// session has a terminal, else demultiplexed (stdout and stderr frames).
func copyOutput(stdout, stderr io.Writer, r io.Reader, tty bool) error {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if tty {
		_, err := io.Copy(stdout, r)
		return err
	}
	return demuxTo(stdout, stderr, r)
}

// demuxTo splits a multiplexed stream (8-byte headers: stream, 3 zero
// bytes, big-endian length) into stdout (streams 0 and 1) and stderr (2).
// Stream 3 carries an error message from podman.
func demuxTo(stdout, stderr io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 32*1024)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		n := int64(uint32(hdr[4])<<24 | uint32(hdr[5])<<16 | uint32(hdr[6])<<8 | uint32(hdr[7]))
		var w io.Writer
		switch hdr[0] {
		case 0, 1:
			w = stdout
		case 2:
			w = stderr
		case 3:
			var msg bytes.Buffer
			if _, err := io.CopyN(&msg, br, n); err != nil {
				return err
			}
			return fmt.Errorf("podman: %s", bytes.TrimSpace(msg.Bytes()))
		default:
			return fmt.Errorf("bad stream header %v", hdr)
		}
		if _, err := io.CopyN(w, br, n); err != nil {
			return err
		}
	}
}

// pumpStdin copies in to the session and half-closes it at in's EOF, so
// the process sees its stdin end. It returns when in ends or the session
// is closed; the caller closes the session (and in, when it can) to make
// it return.
func pumpStdin(s *rawStream, in io.Reader) {
	if _, err := io.Copy(s, in); err == nil {
		_ = s.CloseWrite()
	}
}
