package provider

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/hostvolume"
)

// Defaults of a node's volume watch.
const (
	// volumeSpaceInterval is how often the space of the volume root is read
	// while the host is Ready (and soon after each volume made or removed).
	volumeSpaceInterval = 30 * time.Second
	// volumeSweepInterval is how often the root is swept of volumes that
	// belong to no PersistentVolume.
	volumeSweepInterval = 10 * time.Minute
	// volumeSweepGrace: a volume's files must be this old before a sweep
	// takes them for orphans; the provisioner makes them before the
	// PersistentVolume that names them exists.
	volumeSweepGrace = 10 * time.Minute
)

// HostVolumesConfig configures a HostVolumes.
type HostVolumesConfig struct {
	Node string
	// Root is the node's volume root (spec.volumes.root) on the host.
	Root string
	Host *Host
	// Known says whether a PersistentVolume of the name exists, and
	// whether the answer can be trusted yet (the cache has listed once):
	// nothing is swept before it can.
	Known func(name string) (exists, synced bool)
	// Event reports on the node (a swept orphan).
	Event func(eventType, reason, message string)
	Log   *slog.Logger
	Clock clock.WithTicker
}

// HostVolumes watches a node's volume root on its build host: the space
// there, for the node's facts (rbn-extender's filter) and rbn's metrics,
// and the volumes that belong to no PersistentVolume any more (left by a
// provisioning cut short whose claim went, or by a PersistentVolume
// deleted without the provisioner), which it removes and reports.
type HostVolumes struct {
	cfg  HostVolumesConfig
	poke chan struct{}

	mu      sync.Mutex
	space   hostvolume.Space
	known   bool
	changed chan struct{}
	swept   uint64 // orphan volumes removed
	sweepAt time.Time
}

// NewHostVolumes returns the watch of cfg's volume root; Run runs it.
func NewHostVolumes(cfg HostVolumesConfig) *HostVolumes {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &HostVolumes{cfg: cfg, poke: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Space is the root's space as last read; false before the first reading.
func (v *HostVolumes) Space() (hostvolume.Space, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.space, v.known
}

// Swept counts the orphan volumes removed since the watch started.
func (v *HostVolumes) Swept() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.swept
}

// Changed is closed when a reading moved (see moved) from the one before.
func (v *HostVolumes) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

// Poke has the space read again soon: a volume was made or removed.
func (v *HostVolumes) Poke() {
	select {
	case v.poke <- struct{}{}:
	default:
	}
}

// Run reads the space whenever the host is Ready, every
// volumeSpaceInterval and after each Poke, and sweeps every
// volumeSweepInterval, until ctx ends.
func (v *HostVolumes) Run(ctx context.Context) error {
	t := v.cfg.Clock.NewTicker(volumeSpaceInterval)
	defer t.Stop()
	for {
		hostChanged := v.cfg.Host.Changed()
		if v.cfg.Host.ready() {
			v.read(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		case <-v.poke:
		case <-hostChanged:
		}
	}
}

// read reads the space, and sweeps when one is due.
func (v *HostVolumes) read(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sp, err := hostvolume.ReadSpace(ctx, v.cfg.Host.SSH(), v.cfg.Root, "")
	if err != nil {
		v.cfg.Log.Info("reading the volume root's space", "root", v.cfg.Root, "err", err)
		return
	}
	v.mu.Lock()
	if moved(v.space, sp, v.known) {
		close(v.changed)
		v.changed = make(chan struct{})
	}
	v.space, v.known = sp, true
	due := !v.cfg.Clock.Now().Before(v.sweepAt)
	v.mu.Unlock()
	if due {
		v.sweep(ctx)
	}
}

// moved says whether reading now differs enough from before (known: there
// was one) to publish the node again: the first reading, a volume more or
// less, or the free space moved by 1% of the file system. Other writes to
// the root's file system move its free space all the time, and each
// publication is a Node update.
func moved(before, now hostvolume.Space, known bool) bool {
	if !known || before.Volumes != now.Volumes || before.Total != now.Total {
		return true
	}
	d := before.Free() - now.Free()
	return max(d, -d) >= now.Total/100
}

// sweep removes the volumes below the root that belong to no
// PersistentVolume and are older than volumeSweepGrace.
func (v *HostVolumes) sweep(ctx context.Context) {
	if v.cfg.Known == nil {
		return
	}
	entries, err := hostvolume.List(ctx, v.cfg.Host.SSH(), v.cfg.Root)
	if err != nil {
		v.cfg.Log.Info("listing the volume root", "root", v.cfg.Root, "err", err)
		return
	}
	now := v.cfg.Clock.Now()
	orphans, synced := orphanVolumes(entries, v.cfg.Known, now)
	if !synced {
		return // the next reading tries again
	}
	v.mu.Lock()
	v.sweepAt = now.Add(volumeSweepInterval)
	v.mu.Unlock()
	for _, e := range orphans {
		vol := e.Volume(v.cfg.Root)
		if err := hostvolume.Remove(ctx, v.cfg.Host.SSH(), vol); err != nil {
			v.cfg.Log.Warn("removing an orphan volume", "dir", vol.Dir, "err", err)
			continue
		}
		v.mu.Lock()
		v.swept++
		v.mu.Unlock()
		msg := fmt.Sprintf("removed %s from the build host: a volume of no PersistentVolume, last changed %s", vol.Dir, e.Modified.UTC().Format(time.RFC3339))
		v.cfg.Log.Warn("orphan volume removed", "dir", vol.Dir, "modified", e.Modified)
		if v.cfg.Event != nil {
			v.cfg.Event("Warning", "OrphanVolumeRemoved", msg)
		}
		v.Poke()
	}
}

// orphanVolumes picks the entries that belong to no PersistentVolume and
// have not changed for volumeSweepGrace; false when known cannot answer
// yet.
func orphanVolumes(entries []hostvolume.Entry, known func(string) (bool, bool), now time.Time) ([]hostvolume.Entry, bool) {
	var out []hostvolume.Entry
	for _, e := range entries {
		exists, synced := known(e.Name)
		if !synced {
			return nil, false
		}
		if !exists && now.Sub(e.Modified) >= volumeSweepGrace {
			out = append(out, e)
		}
	}
	return out, true
}
