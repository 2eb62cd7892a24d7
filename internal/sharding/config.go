// Package sharding decides which rbn-kubelet replica serves which
// RemoteBuildNode: each replica renews a coordination.k8s.io Lease of its
// own (rbn-replica-<identity> in rbn's namespace), contends for one Lease per
// node (rbn-node-<name>) and serves the nodes whose Lease names it, for as
// long as its own Lease is renewed. A node whose holder's replica Lease
// stops changing is taken over by another replica once it has not changed
// for its duration, as that replica's own clock measures it. Node Leases are
// written only when they change hands. See docs/ha.md for the design.
//
// It knows nothing of what serving a node means: the controller asks Held,
// watches Lost, and is told of every change through Config.OnChange.
package sharding

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
)

// Defaults: a killed replica's nodes are taken over about LeaseDuration after
// its last renewal, well within the node-lifecycle controller's grace period
// (nodes stay Ready); a replica that cannot renew stops serving at
// RenewDeadline, LeaseDuration-RenewDeadline before another may take over.
const (
	DefaultLeaseDuration = 10 * time.Second
	DefaultRenewDeadline = 7 * time.Second
	DefaultRenewInterval = 3 * time.Second
	DefaultRetryPeriod   = time.Second
	// LeasePrefix starts every node Lease's name.
	LeasePrefix = "rbn-node-"
	// ReplicaLeasePrefix starts every replica Lease's name.
	ReplicaLeasePrefix = "rbn-replica-"
	// LabelLease marks rbn's Leases: "node" for a node's (who serves it),
	// "replica" for a replica's (whether it lives); the replicas watch
	// only these.
	LabelLease = "rbn.dev/lease"
	// AnnotationLiveness on a node Lease says what keeps its hold alive:
	// "replica-lease", the holder's replica Lease (this version's scheme).
	// A node Lease without it is renewed by its holder itself (rbn before
	// replica Leases), and judged by its own changes.
	AnnotationLiveness = "rbn.dev/liveness"
	livenessReplica    = "replica-lease"
)

// termHold is the leaseDurationSeconds written into node Leases held
// through a replica Lease. Those are not renewed; a replica of an earlier
// version, which judges a node Lease by its own changes, waits this long
// before taking one: so during a rolling upgrade it never takes a node
// from a live holder of this version.
const termHold = time.Hour

// replicaLeaseGC: a replica Lease not renewed for this many lease
// durations, as a live replica observes it, is deleted: its replica is
// gone (pods get new names, so each replica that ever ran left one).
const replicaLeaseGC = 10

// Config configures an Elector.
type Config struct {
	// Leases reads, watches and writes the Leases in Namespace. Give it a
	// client with a rate budget of its own: renewals must not wait behind
	// pod status updates.
	Leases    coordinationv1client.LeasesGetter
	Namespace string
	// Identity names this replica in the Leases it holds: unique among the
	// processes running at once (the pod name is: a restarted container of
	// the same pod takes its Leases back at once, the old process being gone).
	Identity string

	// LeaseDuration is how long a replica's Lease must stay unchanged, as
	// this replica observes it, before this replica takes the nodes it
	// holds (a node Lease of an earlier version of rbn: the node Lease
	// itself).
	LeaseDuration time.Duration
	// RenewDeadline: a replica that could not renew its own Lease for this
	// long (since the start of its last successful renewal) stops serving
	// every node. Less than LeaseDuration: the difference is the safety
	// margin.
	RenewDeadline time.Duration
	// RenewInterval is how often the replica's own Lease is renewed.
	RenewInterval time.Duration
	// RetryPeriod is the wait before trying again after a failed request.
	RetryPeriod time.Duration

	// Clock measures every duration above. Default: the real clock.
	Clock clock.WithDelayedExecution
	// OnChange, if set, is called (never under a lock, from the Elector's
	// goroutines) whenever Held(node) becomes true or a hold ends.
	OnChange func(node string)
	// Logger defaults to the logger of Run's context.
	Logger *slog.Logger
}

// ErrInvalidConfig classifies every configuration error of New.
var ErrInvalidConfig = errors.New("invalid sharding configuration")

func (c *Config) setDefaults() {
	if c.LeaseDuration == 0 {
		c.LeaseDuration = DefaultLeaseDuration
	}
	if c.RenewDeadline == 0 {
		c.RenewDeadline = DefaultRenewDeadline
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = DefaultRenewInterval
	}
	if c.RetryPeriod == 0 {
		c.RetryPeriod = DefaultRetryPeriod
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Leases == nil {
		errs = append(errs, errors.New("leases client is nil"))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("namespace is empty"))
	}
	if c.Identity == "" {
		errs = append(errs, errors.New("identity is empty"))
	} else if _, err := ReplicaLeaseName(c.Identity); err != nil {
		errs = append(errs, fmt.Errorf("identity: %w", err))
	}
	if c.RetryPeriod <= 0 || c.RetryPeriod > c.RenewInterval ||
		c.RenewInterval >= c.RenewDeadline || c.RenewDeadline >= c.LeaseDuration {
		errs = append(errs, fmt.Errorf("want 0 < retryPeriod (%s) <= renewInterval (%s) < renewDeadline (%s) < leaseDuration (%s)",
			c.RetryPeriod, c.RenewInterval, c.RenewDeadline, c.LeaseDuration))
	}
	if c.LeaseDuration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("leaseDuration %s: a Lease counts whole seconds", c.LeaseDuration))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
