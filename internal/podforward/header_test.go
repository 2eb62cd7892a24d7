package podforward

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, listen := range []string{"127.0.100.1:80", "127.0.0.1:65535", "10.1.2.3:1"} {
		t.Run(listen, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteHeader(&buf, listen); err != nil {
				t.Fatalf("WriteHeader: %v", err)
			}
			if want := HeaderPrefix + listen + "\n"; buf.String() != want {
				t.Fatalf("wrote %q, want %q", buf.String(), want)
			}
			buf.WriteString("relayed bytes")
			r := bufio.NewReader(&buf)
			got, err := ReadHeader(r)
			if err != nil {
				t.Fatalf("ReadHeader: %v", err)
			}
			if got != listen {
				t.Fatalf("ReadHeader = %q, want %q", got, listen)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "relayed bytes" {
				t.Fatalf("after the header %q remained, want %q", rest, "relayed bytes")
			}
		})
	}
}

func TestReadHeaderRejects(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		reason string // a *HeaderError whose Reason contains this
		err    error  // or an error that Is this
	}{
		{name: "empty stream", in: "", err: io.EOF},
		{name: "no newline before EOF", in: HeaderPrefix + "127.0.0.1:80", err: io.ErrUnexpectedEOF},
		{name: "too long", in: HeaderPrefix + strings.Repeat("1", MaxHeaderLen) + "\n", reason: "no newline within 256 bytes"},
		{name: "newline just past the bound", in: HeaderPrefix + "127.0.0.1:80" + strings.Repeat(" ", MaxHeaderLen-len(HeaderPrefix)-len("127.0.0.1:80")) + "\n", reason: "no newline within"},
		{name: "no prefix", in: "127.0.0.1:80\n", reason: "does not start with"},
		{name: "other version", in: "rbn-forward/2 127.0.0.1:80\n", reason: "does not start with"},
		{name: "IPv6", in: HeaderPrefix + "[::1]:80\n", reason: "not an IPv4 address"},
		{name: "IPv4-mapped IPv6", in: HeaderPrefix + "[::ffff:127.0.0.1]:80\n", reason: "not an IPv4 address"},
		{name: "host name", in: HeaderPrefix + "localhost:80\n", reason: "not an IPv4 address:port"},
		{name: "no port", in: HeaderPrefix + "127.0.0.1\n", reason: "not an IPv4 address:port"},
		{name: "port out of range", in: HeaderPrefix + "127.0.0.1:65536\n", reason: "not an IPv4 address:port"},
		{name: "port 0", in: HeaderPrefix + "127.0.0.1:0\n", reason: "port 0"},
		{name: "port with leading zero", in: HeaderPrefix + "127.0.0.1:080\n", reason: "canonical"},
		{name: "carriage return", in: HeaderPrefix + "127.0.0.1:80\r\n", reason: "not an IPv4 address:port"},
		{name: "trailing space", in: HeaderPrefix + "127.0.0.1:80 \n", reason: "not an IPv4 address:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadHeader(bufio.NewReader(strings.NewReader(tt.in)))
			if err == nil {
				t.Fatalf("ReadHeader = %q, want an error", got)
			}
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ReadHeader error %v, want one that is %v", err, tt.err)
				}
				return
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("ReadHeader error %v (%T), want a *HeaderError", err, err)
			}
			if !strings.Contains(he.Reason, tt.reason) {
				t.Fatalf("HeaderError reason %q, want it to contain %q", he.Reason, tt.reason)
			}
			if len(he.Line) > MaxHeaderLen {
				t.Fatalf("HeaderError line is %d bytes, more than the %d read", len(he.Line), MaxHeaderLen)
			}
		})
	}
}

func TestReadHeaderStopsAtBound(t *testing.T) {
	// A peer that never sends a newline must not be read past the bound.
	in := strings.Repeat("x", 10*MaxHeaderLen)
	r := bufio.NewReader(strings.NewReader(in))
	if _, err := ReadHeader(r); err == nil {
		t.Fatal("ReadHeader accepted a line without a newline")
	}
	rest, _ := io.ReadAll(r)
	if consumed := len(in) - len(rest); consumed != MaxHeaderLen {
		t.Fatalf("ReadHeader consumed %d bytes, want %d", consumed, MaxHeaderLen)
	}
}

func TestWriteHeaderRejects(t *testing.T) {
	for _, listen := range []string{"", "localhost:80", "[::1]:80", "127.0.0.1:0", "127.0.0.1", "127.0.0.1:080", "127.0.0.1:80\n"} {
		t.Run(listen, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteHeader(&buf, listen)
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("WriteHeader(%q) = %v, want a *HeaderError", listen, err)
			}
			if buf.Len() != 0 {
				t.Fatalf("WriteHeader(%q) wrote %q despite the error", listen, buf.String())
			}
		})
	}
}
