package sshconn

import (
	"context"
	"errors"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Reason is a CamelCase classification of a connection failure, suitable for
// a Kubernetes condition reason.
type Reason string

const (
	ReasonUnreachable     Reason = "SSHUnreachable"
	ReasonHostKeyMismatch Reason = "HostKeyMismatch"
	ReasonHostKeyUnknown  Reason = "HostKeyUnknown"
	ReasonAuthFailed      Reason = "SSHAuthenticationFailed"
	ReasonHandshakeFailed Reason = "SSHHandshakeFailed"
	ReasonConnectionLost  Reason = "SSHConnectionLost"
	ReasonNotConnected    Reason = "SSHNotConnected"
)

// Sentinel errors; every error this package returns matches one of them with errors.Is.
var (
	ErrUnreachable     = errors.New("host unreachable")
	ErrHostKeyMismatch = errors.New("host key does not match known_hosts")
	ErrHostKeyUnknown  = errors.New("host key not in known_hosts")
	ErrAuthFailed      = errors.New("authentication refused")
	ErrHandshakeFailed = errors.New("ssh handshake failed")
	ErrConnectionLost  = errors.New("ssh connection lost")
	ErrNotConnected    = errors.New("not connected")
)

// Error is a classified connection failure.
type Error struct {
	Reason Reason
	Addr   string
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + " " + e.Addr + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrHostKeyMismatch) and friends work on the reason.
func (e *Error) Is(target error) bool {
	return sentinelOf(e.Reason) == target
}

func sentinelOf(r Reason) error {
	switch r {
	case ReasonUnreachable:
		return ErrUnreachable
	case ReasonHostKeyMismatch:
		return ErrHostKeyMismatch
	case ReasonHostKeyUnknown:
		return ErrHostKeyUnknown
	case ReasonAuthFailed:
		return ErrAuthFailed
	case ReasonHandshakeFailed:
		return ErrHandshakeFailed
	case ReasonConnectionLost:
		return ErrConnectionLost
	case ReasonNotConnected:
		return ErrNotConnected
	}
	return nil
}

// ReasonOf returns the classification of err, or "" when err is not ours.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// classifyDial turns an error from dialing and handshaking into an *Error.
// hostKeyErr is what the host key callback rejected, if anything: the ssh
// package does not always keep it reachable through wrapping.
func classifyDial(addr string, err, hostKeyErr error) *Error {
	if hostKeyErr != nil {
		var ke *knownhosts.KeyError
		if errors.As(hostKeyErr, &ke) && len(ke.Want) == 0 {
			return &Error{Reason: ReasonHostKeyUnknown, Addr: addr, Err: hostKeyErr}
		}
		return &Error{Reason: ReasonHostKeyMismatch, Addr: addr, Err: hostKeyErr}
	}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &opErr) && opErr.Op == "dial",
		errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return &Error{Reason: ReasonUnreachable, Addr: addr, Err: err}
	case isAuthFailure(err):
		return &Error{Reason: ReasonAuthFailed, Addr: addr, Err: err}
	}
	return &Error{Reason: ReasonHandshakeFailed, Addr: addr, Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isAuthFailure recognises the client's "no method left" failure. x/crypto/ssh
// reports it only as text; ServerAuthError is the server side's type.
func isAuthFailure(err error) bool {
	var pe *ssh.PassphraseMissingError
	if errors.As(err, &pe) {
		return true
	}
	return strings.Contains(err.Error(), "unable to authenticate")
}
