package kubeletapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// containerLogs serves GET /containerLogs/{namespace}/{pod}/{container}
// (kubectl logs). Not virtual-kubelet's handler: that one cannot tell
// tailLines=0 from no tailLines, and flushes after every write, which makes
// a large log a flood of tiny TLS records.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) {
	vars := mux.Vars(r)
	ns, pod, container := vars["namespace"], vars["pod"], vars["container"]
	opts, tail, err := parseLogOptions(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// limitBytes counts what the client gets, timestamps included: applied
	// here, after they are rewritten.
	limit := opts.LimitBytes
	opts.LimitBytes = 0
	h := handlersOf(r.Context()).ContainerLogs
	if h == nil {
		err := errNotImplemented("container logs")
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	logs, err := h(r.Context(), ns, pod, container, opts, tail)
	if err != nil {
		http.Error(w, err.Error(), httpStatus(err))
		return
	}
	defer logs.Close()
	var out io.Reader = logs
	if opts.Timestamps {
		out = &timestampWriter{r: bufio.NewReaderSize(logs, 32*1024), atStart: true}
	}
	if limit > 0 {
		out = io.LimitReader(out, int64(limit))
	}
	w.Header().Set("Content-Type", "text/plain")
	if err := copyFlushing(w, out); err != nil && r.Context().Err() == nil {
		logging.FromContext(r.Context()).Info("container logs: stream broken", "pod", ns+"/"+pod, "container", container, "err", err)
	}
}

// parseLogOptions reads kubelet's log query parameters, rejecting what
// kubelet rejects. tail is -1 without tailLines.
func parseLogOptions(q url.Values) (opts vkapi.ContainerLogOpts, tail int, err error) {
	tail = -1
	intParam := func(name string, min int) (int, bool, error) {
		v := q.Get(name)
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, false, fmt.Errorf("could not parse %q: %w", name, err)
		}
		if n < min {
			return 0, false, fmt.Errorf("%q must be at least %d, not %d", name, min, n)
		}
		return n, true, nil
	}
	boolParam := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("could not parse %q: %w", name, err)
		}
		return b, nil
	}
	var ok bool
	if tail, ok, err = intParam("tailLines", 0); err != nil {
		return opts, -1, err
	} else if !ok {
		tail = -1
	}
	opts.Tail = max(tail, 0)
	if opts.LimitBytes, _, err = intParam("limitBytes", 1); err != nil {
		return opts, -1, err
	}
	if opts.SinceSeconds, _, err = intParam("sinceSeconds", 1); err != nil {
		return opts, -1, err
	}
	if v := q.Get("sinceTime"); v != "" {
		if opts.SinceTime, err = time.Parse(time.RFC3339, v); err != nil {
			return opts, -1, fmt.Errorf("could not parse \"sinceTime\": %w", err)
		}
		if opts.SinceSeconds > 0 {
			return opts, -1, errors.New(`both "sinceSeconds" and "sinceTime" are set`)
		}
	}
	if opts.Follow, err = boolParam("follow"); err != nil {
		return opts, -1, err
	}
	if opts.Previous, err = boolParam("previous"); err != nil {
		return opts, -1, err
	}
	if opts.Timestamps, err = boolParam("timestamps"); err != nil {
		return opts, -1, err
	}
	return opts, tail, nil
}

// copyFlushing copies r to w, buffering while data keeps coming and
// flushing whenever r has nothing more at hand: a followed log shows each
// line at once, a large one goes out in large writes.
func copyFlushing(w http.ResponseWriter, r io.Reader) error {
	rc := http.NewResponseController(w)
	bw := bufio.NewWriterSize(w, 64*1024)
	type chunk struct {
		b   []byte
		err error
	}
	chunks := make(chan chunk, 64)
	done := make(chan struct{})
	defer close(done)
	go func() {
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			c := chunk{err: err}
			if n > 0 {
				c.b = append([]byte(nil), buf[:n]...)
			}
			select {
			case chunks <- c:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		if len(c.b) > 0 {
			if _, err := bw.Write(c.b); err != nil {
				return err
			}
		}
		if c.err != nil {
			if err := bw.Flush(); err != nil {
				return err
			}
			// The end goes out now, not when the handler returns.
			if err := rc.Flush(); err != nil {
				return err
			}
			if errors.Is(c.err, io.EOF) {
				return nil
			}
			return c.err
		}
		if len(chunks) == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// timestampWriter rewrites the timestamp podman puts before each log line
// (RFC 3339 in the host's zone; whole seconds before podman 5) as kubelet
// writes it: RFC 3339 with nanoseconds, in UTC.
type timestampWriter struct {
	r       *bufio.Reader
	atStart bool
	pending []byte
}

func (t *timestampWriter) Read(p []byte) (int, error) {
	for len(t.pending) == 0 {
		line, err := t.r.ReadSlice('\n')
		if len(line) > 0 {
			if t.atStart {
				line = rewriteTimestamp(line)
			} else {
				line = append([]byte(nil), line...)
			}
			t.pending = line
			t.atStart = line[len(line)-1] == '\n'
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if len(t.pending) > 0 {
				break
			}
			return 0, err
		}
	}
	n := copy(p, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}

// rewriteTimestamp reformats the leading timestamp of a log line; a line
// that does not start with one is returned as it is.
func rewriteTimestamp(line []byte) []byte {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return append([]byte(nil), line...)
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return append([]byte(nil), line...)
	}
	out := make([]byte, 0, len(line)+10)
	out = ts.UTC().AppendFormat(out, time.RFC3339Nano)
	return append(out, line[sp:]...)
}
