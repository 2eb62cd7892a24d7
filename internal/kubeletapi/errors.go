package kubeletapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
)

// The one place where a handler's error becomes the API's answer.
//
// Handlers classify their errors with virtual-kubelet's errdefs, possibly
// wrapped with context (%w). errdefs.IsNotFound and IsInvalidInput look at
// the outside of an error only (and through Cause), not through %w:
// apiError puts the class back on the outside for virtual-kubelet's
// handlers, and httpStatus gives the status code for this package's own.

// notImplementedError: a node has no handler for a route.
type notImplementedError struct{ what string }

func (e *notImplementedError) Error() string {
	return fmt.Sprintf("%s is not implemented for this node", e.what)
}

func errNotImplemented(what string) error { return &notImplementedError{what: what} }

// apiError returns err with its class (not found, invalid input) where
// errdefs looks for it; other errors (an exec's exit error) unchanged.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case isNotFound(err) && !errdefs.IsNotFound(err):
		return errdefs.AsNotFound(err)
	case isInvalidInput(err) && !errdefs.IsInvalidInput(err):
		return errdefs.AsInvalidInput(err)
	}
	return err
}

// httpStatus is the status kubelet would answer for err.
func httpStatus(err error) int {
	var ni *notImplementedError
	switch {
	case isNotFound(err):
		return http.StatusNotFound
	case isInvalidInput(err):
		return http.StatusBadRequest
	case errors.As(err, &ni):
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

func isNotFound(err error) bool {
	var e errdefs.ErrNotFound
	return errdefs.IsNotFound(err) || (errors.As(err, &e) && e.NotFound())
}

func isInvalidInput(err error) bool {
	var e errdefs.ErrInvalidInput
	return errdefs.IsInvalidInput(err) || (errors.As(err, &e) && e.InvalidInput())
}
