package sshconn

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Sentinel errors of ListenLoopback.
var (
	// ErrForwardExposed: the host bound the forward beyond its loopback.
	ErrForwardExposed = errors.New("forward reachable beyond the host's loopback")
	// ErrForwardUnverified: where the host bound the forward could not be read.
	ErrForwardUnverified = errors.New("cannot verify the forward's address on the host")
)

// ListenLoopback asks the host to listen on 127.0.0.1, on a port sshd
// chooses, and forward what it accepts over the current connection (an
// OpenSSH "tcpip-forward"; the listener's Addr says which port). The
// listener ends with the connection: Accept then fails, and so does every
// accepted stream, so nothing served on it outlives the connection. It fails
// at once with ErrNotConnected while there is no connection.
//
// The SSH reply carries the port, not the address sshd bound: with
// GatewayPorts yes in sshd_config, sshd binds every address whatever the
// client asked (no and clientspecified keep 127.0.0.1). So the host's own
// table of listening sockets is read (/proc/net/tcp and tcp6, one command
// over this connection, in sshd's network namespace) and the listener is
// closed and refused, with ErrForwardExposed, when the port listens on any
// address but loopback; with ErrForwardUnverified when the table is
// unreadable or does not list the port. The check says where the port
// listens, not who may connect: the loopback is every local user's, so what
// is served there must still be authenticated.
func (c *Client) ListenLoopback(ctx context.Context) (net.Listener, error) {
	conn, err := c.connected()
	if err != nil {
		return nil, err
	}
	ln, err := conn.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ssh %s: listen on the host's loopback: %w", c.addr, err)
	}
	port := 0
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	if err := c.checkLoopbackOnly(ctx, port); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("ssh %s: %w", c.addr, err)
	}
	return countedListener{Listener: ln, count: &c.channels}, nil
}

// procNetTCP is the command that lists the host's TCP sockets; tcp6 is
// missing on a kernel without IPv6.
var procNetTCP = []string{"cat", "/proc/net/tcp", "/proc/net/tcp6"}

// checkLoopbackOnly reads where port listens on the host. The output is
// streamed, never capped: the listening sockets come first in each table,
// but a busy host's IPv4 table alone can exceed what Output keeps.
func (c *Client) checkLoopbackOnly(ctx context.Context, port int) error {
	if port <= 0 {
		return fmt.Errorf("%w: the host gave no port for the forward", ErrForwardUnverified)
	}
	out, err := c.Stream(ctx, procNetTCP...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrForwardUnverified, err)
	}
	defer out.Close()
	return loopbackOnly(out, port)
}

// loopbackOnly reads the host's /proc/net/tcp then tcp6 and checks that
// port listens on loopback addresses only, and on at least one. The
// addresses are printed as 32-bit words in the host's byte order, which is
// not known here: an address is taken for loopback when it reads 127.0.0.1,
// ::1 or ::ffff:127.0.0.1 in either order. Of the addresses sshd binds for
// a forward asked on 127.0.0.1 (that one, or 0.0.0.0 and ::), none is
// mistaken for the other.
func loopbackOnly(r io.Reader, port int) error {
	var (
		v4Table  bool
		loopback int
		exposed  []string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "sl" { // a table's header: the IPv4 one says rem_address, tcp6 remote_address
			if len(f) > 2 && f[2] == "rem_address" {
				v4Table = true
			}
			continue
		}
		if len(f) < 4 || f[3] != "0A" { // TCP_LISTEN
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
			continue
		}
		addr, isLoopback, err := decodeProcAddr(hexAddr)
		if err != nil {
			return fmt.Errorf("%w: /proc/net/tcp: %w", ErrForwardUnverified, err)
		}
		if isLoopback {
			loopback++
		} else {
			exposed = append(exposed, net.JoinHostPort(addr, strconv.Itoa(port)))
		}
	}
	switch {
	case sc.Err() != nil:
		return fmt.Errorf("%w: reading the host's /proc/net/tcp: %w", ErrForwardUnverified, sc.Err())
	case len(exposed) > 0:
		return fmt.Errorf("%w: the host's sshd bound the forward to %s, not only to 127.0.0.1 (GatewayPorts yes in its sshd_config?); refusing it: set GatewayPorts no (docs/operations.md)",
			ErrForwardExposed, strings.Join(exposed, ", "))
	case !v4Table:
		return fmt.Errorf("%w: %s printed no IPv4 socket table", ErrForwardUnverified, strings.Join(procNetTCP, " "))
	case loopback == 0:
		return fmt.Errorf("%w: port %d is not among the listening sockets in the host's /proc/net/tcp", ErrForwardUnverified, port)
	}
	return nil
}

var (
	loopback4       = netip.MustParseAddr("127.0.0.1")
	loopback6       = netip.IPv6Loopback()
	loopbackV4InV6  = netip.AddrFrom16(loopback4.As16())
	errProcAddrSize = errors.New("address of neither 4 nor 16 bytes")
)

// decodeProcAddr decodes an address of /proc/net/tcp{,6}: 32-bit words in
// hex, each in the host's byte order. It returns the address as a
// little-endian host means it (for messages) and whether it is loopback in
// either byte order.
func decodeProcAddr(s string) (string, bool, error) {
	raw, err := hex.DecodeString(s)
	if err != nil {
		return "", false, fmt.Errorf("address %q: %w", s, err)
	}
	if len(raw) != 4 && len(raw) != 16 {
		return "", false, fmt.Errorf("address %q: %w", s, errProcAddrSize)
	}
	little := make([]byte, len(raw))
	for w := 0; w < len(raw); w += 4 {
		for i := range 4 {
			little[w+i] = raw[w+3-i]
		}
	}
	le, _ := netip.AddrFromSlice(little)
	be, _ := netip.AddrFromSlice(raw)
	isLoopback := func(a netip.Addr) bool { return a == loopback4 || a == loopback6 || a == loopbackV4InV6 }
	return le.String(), isLoopback(le) || isLoopback(be), nil
}

// ListenUnix asks the host's sshd to listen on the Unix socket at path and
// forward what it accepts over the current connection (OpenSSH's
// "streamlocal-forward@openssh.com"). sshd creates the socket with its
// StreamLocalBindMask (0177 by default: only root may connect) and, with its
// StreamLocalBindUnlink default (no), refuses a path that exists: the caller
// removes a socket left from an earlier connection first. The listener ends
// with the connection, as ListenLoopback's does. It fails at once with
// ErrNotConnected while there is no connection.
func (c *Client) ListenUnix(path string) (net.Listener, error) {
	conn, err := c.connected()
	if err != nil {
		return nil, err
	}
	ln, err := conn.ListenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: listen on the host's socket %s: %w", c.addr, path, err)
	}
	return countedListener{Listener: ln, count: &c.channels}, nil
}
