package provider

import (
	"time"
)

// RetryConfig says how soon pod work that failed is tried again.
type RetryConfig struct {
	// Sync: a pod sync that failed (the host did not answer). Default 5s.
	Sync time.Duration
	// Config: a pod or container whose configuration is not usable yet (an
	// object it references is missing, a subPath cannot be resolved).
	// Default 10s.
	Config time.Duration
	// Create: a container that could not be created or filled. Default 10s.
	Create time.Duration
	// Teardown: a deleted pod whose removal from the host failed. Default 5s.
	Teardown time.Duration
	// Events: the host's event stream, when it cannot be opened. Default 2s.
	Events time.Duration
}

// withDefaults fills the zero fields of r with their defaults.
func (r RetryConfig) withDefaults() RetryConfig {
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&r.Sync, 5 * time.Second}, {&r.Config, 10 * time.Second}, {&r.Create, 10 * time.Second}, {&r.Teardown, 5 * time.Second}, {&r.Events, 2 * time.Second}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return r
}
