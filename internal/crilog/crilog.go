// Package crilog reads a container's log file in the CRI logging format,
// the one podman's k8s-file driver (conmon) writes and kubelet reads:
//
//	<RFC 3339 time> <stream> <tag> <content>\n
//
// where the stream is stdout or stderr and the tag's first field is F for
// a record that ends its line or P for part of a line cut by the runtime.
// Copy turns such a file into what podman's logs API gives for it, so
// that the kubelet API serves either alike: the content of each record,
// a newline after each ended line, and, when asked, the record's time
// before each line.
//
// It is pure: the file's bytes come from whoever reads it.
package crilog

import (
	"bufio"
	"bytes"
	"io"
	"time"
)

// Options select what Copy writes.
type Options struct {
	// Since drops the records written before it (zero: none).
	Since time.Time
	// Timestamps writes the time of a line's first record, as the file
	// has it, and a space before the line.
	Timestamps bool
}

// bufSize is the read and write buffer: a record longer than it (conmon
// cuts lines at 8 KiB, so only a malformed file has one) is copied in
// pieces, never held whole.
const bufSize = 64 * 1024

// Copy writes the log read from r to w. Output is flushed whenever r has
// nothing more at hand, so a large file moves in large writes. A line
// that is not a record (a damaged file) is written as it is: nothing in
// the file is dropped but by Since. A last record without its newline (a
// file cut while it was written) is written as far as it goes.
func Copy(w io.Writer, r io.Reader, o Options) error {
	br := bufio.NewReaderSize(r, bufSize)
	bw := bufio.NewWriterSize(w, bufSize)
	atLineStart := true
	// A broken read still delivers the lines before it.
	broken := func(err error) error {
		_ = bw.Flush()
		return err
	}
	for {
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		chunk, err := br.ReadSlice('\n')
		if err == io.EOF && len(chunk) == 0 {
			return bw.Flush()
		}
		if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
			return broken(err)
		}
		whole := err == nil // chunk ends the file's line
		rec, ok := parse(chunk)
		keep := true
		switch {
		case !ok:
			// Not a record: the line as it is.
			rec = record{content: chunk, full: true}
		case !o.Since.IsZero():
			if t, err := time.Parse(time.RFC3339Nano, string(rec.time)); err == nil && t.Before(o.Since) {
				keep = false
			}
		}
		if keep {
			if o.Timestamps && atLineStart && ok {
				bw.Write(rec.time)
				bw.WriteByte(' ')
			}
			if _, err := bw.Write(bytes.TrimSuffix(rec.content, []byte{'\n'})); err != nil {
				return err
			}
		}
		// The rest of a line longer than the buffer.
		for !whole && err == bufio.ErrBufferFull {
			chunk, err = br.ReadSlice('\n')
			whole = err == nil
			if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
				return broken(err)
			}
			if keep {
				if _, err := bw.Write(bytes.TrimSuffix(chunk, []byte{'\n'})); err != nil {
					return err
				}
			}
		}
		if keep {
			if rec.full && whole {
				if err := bw.WriteByte('\n'); err != nil {
					return err
				}
			}
			atLineStart = rec.full
		}
		if err == io.EOF {
			return bw.Flush()
		}
	}
}

// record is one parsed line of the file; its slices alias the line.
type record struct {
	time    []byte
	content []byte // up to the line's end, newline included when read
	full    bool   // tag F: the record ends a line
}

// parse reads a record's time, stream and tag off the start of line,
// which holds at least the record's first bufSize bytes.
func parse(line []byte) (record, bool) {
	var rec record
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(ts) == 0 {
		return rec, false
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || !(string(stream) == "stdout" || string(stream) == "stderr") {
		return rec, false
	}
	// The tag ends at a space, or at the line's end for an empty record
	// written without one.
	end := bytes.IndexAny(rest, " \n")
	if end < 0 {
		end = len(rest)
	}
	tag, content := rest[:end], rest[end:]
	if len(content) > 0 && content[0] == ' ' {
		content = content[1:]
	}
	first, _, _ := bytes.Cut(tag, []byte{':'})
	switch string(first) {
	case "F":
		rec.full = true
	case "P":
	default:
		return rec, false
	}
	rec.time, rec.content = ts, content
	return rec, true
}
