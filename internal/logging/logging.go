// Package logging is rbn's one structured logger: log/slog, carried in the
// context, with client-go's klog and virtual-kubelet's logger pointed at the
// same handler so every line of the process has one format.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
)

type ctxKey struct{}

// New returns a logger writing format ("text" or "json") at level.
func New(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q (text, json)", format)
	}
	return slog.New(h), nil
}

// ParseLevel accepts debug, info, warn and error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(strings.ToUpper(s)))
	return l, err
}

// Setup returns the process's logger for a validated format and level and
// installs it (see Install).
func Setup(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	l, err := New(w, format, lvl)
	if err != nil {
		return nil, err
	}
	Install(l)
	return l, nil
}

// ValidateOptions reports problems of a configuration's logFormat and logLevel.
func ValidateOptions(format, level string) field.ErrorList {
	var errs field.ErrorList
	if format != "text" && format != "json" {
		errs = append(errs, field.NotSupported(field.NewPath("logFormat"), format, []string{"text", "json"}))
	}
	if _, err := ParseLevel(level); err != nil {
		errs = append(errs, field.NotSupported(field.NewPath("logLevel"), level, []string{"debug", "info", "warn", "error"}))
	}
	return errs
}

// Install points klog and virtual-kubelet's default logger at l.
func Install(l *slog.Logger) {
	klog.SetSlogLogger(l)
	vklog.L = vkAdapter{l: l}
}

// IntoContext stores l in ctx; virtual-kubelet's log.G(ctx) sees it too.
func IntoContext(ctx context.Context, l *slog.Logger) context.Context {
	ctx = context.WithValue(ctx, ctxKey{}, l)
	return vklog.WithLogger(ctx, vkAdapter{l: l})
}

// FromContext returns the context's logger, or a discarding one.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// With returns ctx with a logger that adds args to every line.
func With(ctx context.Context, args ...any) context.Context {
	return IntoContext(ctx, FromContext(ctx).With(args...))
}

// vkAdapter implements virtual-kubelet's log.Logger over slog.
type vkAdapter struct{ l *slog.Logger }

func (a vkAdapter) Debug(args ...any)            { a.l.Debug(fmt.Sprint(args...)) }
func (a vkAdapter) Debugf(f string, args ...any) { a.l.Debug(fmt.Sprintf(f, args...)) }
func (a vkAdapter) Info(args ...any)             { a.l.Info(fmt.Sprint(args...)) }
func (a vkAdapter) Infof(f string, args ...any)  { a.l.Info(fmt.Sprintf(f, args...)) }
func (a vkAdapter) Warn(args ...any)             { a.l.Warn(fmt.Sprint(args...)) }
func (a vkAdapter) Warnf(f string, args ...any)  { a.l.Warn(fmt.Sprintf(f, args...)) }
func (a vkAdapter) Error(args ...any)            { a.l.Error(fmt.Sprint(args...)) }
func (a vkAdapter) Errorf(f string, args ...any) { a.l.Error(fmt.Sprintf(f, args...)) }
func (a vkAdapter) Fatal(args ...any)            { a.l.Error(fmt.Sprint(args...)) }
func (a vkAdapter) Fatalf(f string, args ...any) { a.l.Error(fmt.Sprintf(f, args...)) }
func (a vkAdapter) WithField(k string, v any) vklog.Logger {
	return vkAdapter{l: a.l.With(k, v)}
}
func (a vkAdapter) WithFields(f vklog.Fields) vklog.Logger {
	args := make([]any, 0, 2*len(f))
	for k, v := range f {
		args = append(args, k, v)
	}
	return vkAdapter{l: a.l.With(args...)}
}
func (a vkAdapter) WithError(err error) vklog.Logger { return vkAdapter{l: a.l.With("err", err)} }
