package scheduler

import "time"

// Policy tunes the decisions. Its defaults live with rbn-extender's
// configuration (internal/app/extender), the one place defaults are set.
type Policy struct {
	// MaxFactsAge: published facts older than this are unknown (see Resolve).
	MaxFactsAge time.Duration
	// DefaultImageSizeBytes is the disk an image that is not on the host is
	// assumed to take once pulled: HostFacts do not carry image sizes and a
	// pod does not declare them. 0 (the default) checks only the pod's
	// declared ephemeral-storage.
	DefaultImageSizeBytes int64
	// LoadTolerance: job counts within this many of the least loaded
	// candidate count as equally loaded. See Prioritize.
	LoadTolerance int
	// RecentFailuresLimit excludes a host with at least this many host-caused
	// pod failures in rbn-kubelet's window; 0 disables the check.
	RecentFailuresLimit int
}
