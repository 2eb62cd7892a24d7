package podman

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/containers/podman/v5/pkg/errorhandling"
)

// Sentinel errors. Errors returned by this package match them with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("podman service unavailable")
	// ErrTimeout: podman did not answer a call within its deadline (see
	// TimeoutError).
	ErrTimeout = errors.New("podman did not answer in time")
)

// TimeoutError is a call podman did not answer within its deadline: a
// hung service, or a helper of it (conmon, the OCI runtime, a pull) stuck.
// The call may have taken effect on the host all the same. It matches
// ErrTimeout, ErrUnavailable (no answer came) and context.DeadlineExceeded.
type TimeoutError struct {
	Op    string // the operation, as CallStats names it
	Host  string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("podman did not answer %s on %s within %s", e.Op, e.Host, e.After)
}

func (e *TimeoutError) Is(target error) bool {
	return target == ErrTimeout || target == ErrUnavailable || target == context.DeadlineExceeded
}

// APIError is a failed podman API call.
type APIError struct {
	Op     string
	Status int
	Err    error
}

func (e *APIError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *APIError) Unwrap() error { return e.Err }

func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrUnavailable:
		return e.Status == 0
	}
	return false
}

// wrap classifies an error from the bindings. A bindings error carrying an
// HTTP status becomes an APIError with it; anything else (no response at all)
// counts as the service being unavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var model *errorhandling.ErrorModel
	if errors.As(err, &model) {
		return &APIError{Op: op, Status: model.ResponseCode, Err: err}
	}
	var value errorhandling.ErrorModel
	if errors.As(err, &value) {
		return &APIError{Op: op, Status: value.ResponseCode, Err: err}
	}
	return &APIError{Op: op, Status: 0, Err: err}
}
