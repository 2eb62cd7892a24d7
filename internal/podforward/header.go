package podforward

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// HeaderPrefix starts the one line the forwarder writes on every connection
// to the socket. The version is in it so that a later rbn-kubelet can tell an
// old forwarder (still running in a long-lived pod) from a new one.
const HeaderPrefix = "rbn-forward/1 "

// MaxHeaderLen bounds the header line, newline included: rbn-kubelet reads it
// from a socket whose other end runs inside a pod, and must not buffer
// without limit whatever arrives there.
const MaxHeaderLen = 256

// HeaderError says why a header line (or an address to put in one) was
// refused.
type HeaderError struct {
	// Line is what was read (without the newline), or the address given to
	// WriteHeader or Config.Listen.
	Line string
	// Reason says what was wrong.
	Reason string
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("rbn-forward header %q: %s", e.Line, e.Reason)
}

// WriteHeader writes the header naming listen, the IPv4 address:port on which
// the client's connection was accepted. It refuses (with *HeaderError) an
// address ReadHeader would refuse, so that a bad one fails on the side that
// made it.
func WriteHeader(w io.Writer, listen string) error {
	if _, err := parseListen(listen); err != nil {
		return err
	}
	// One Write: the header is never split across writes by this side.
	_, err := io.WriteString(w, HeaderPrefix+listen+"\n")
	return err
}

// ReadHeader reads the header line and returns the address it names, leaving
// what follows the line unread in r. A malformed line is a *HeaderError; a
// stream that ends before the newline is io.EOF if nothing came at all, else
// io.ErrUnexpectedEOF (both wrapped).
func ReadHeader(r *bufio.Reader) (listen string, err error) {
	// Byte by byte, not ReadString: the line must end within MaxHeaderLen
	// and nothing after the newline (relayed data) may be consumed.
	var b strings.Builder
	for b.Len() < MaxHeaderLen {
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && b.Len() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", fmt.Errorf("read rbn-forward header: %w", err)
		}
		if c == '\n' {
			return parseLine(b.String())
		}
		b.WriteByte(c)
	}
	return "", &HeaderError{Line: b.String(), Reason: fmt.Sprintf("no newline within %d bytes", MaxHeaderLen)}
}

func parseLine(line string) (string, error) {
	addr, ok := strings.CutPrefix(line, HeaderPrefix)
	if !ok {
		return "", &HeaderError{Line: line, Reason: fmt.Sprintf("does not start with %q", HeaderPrefix)}
	}
	if _, err := parseListen(addr); err != nil {
		var he *HeaderError
		if errors.As(err, &he) {
			he.Line = line
		}
		return "", err
	}
	return addr, nil
}

// parseListen accepts exactly the canonical form net.JoinHostPort gives an
// IPv4 address and a non-zero port: rbn-kubelet compares the address with
// the ones it configured, so "127.0.100.1:080" must not pass as another
// spelling of "127.0.100.1:80".
func parseListen(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return netip.AddrPort{}, &HeaderError{Line: s, Reason: "not an IPv4 address:port"}
	case !ap.Addr().Is4():
		return netip.AddrPort{}, &HeaderError{Line: s, Reason: "not an IPv4 address"}
	case ap.Port() == 0:
		return netip.AddrPort{}, &HeaderError{Line: s, Reason: "port 0"}
	case ap.String() != s:
		return netip.AddrPort{}, &HeaderError{Line: s, Reason: fmt.Sprintf("not in canonical form (%s)", ap)}
	}
	return ap, nil
}
