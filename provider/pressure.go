package provider

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/node"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// evictionMonitoringPeriod is how often a node under disk pressure is
// looked at again, as the kubelet's eviction manager's monitoring period;
// the host's facts (read every 30 s) start a look at once when they change.
const evictionMonitoringPeriod = 10 * time.Second

// The kubelet's node event and messages of an eviction for node pressure
// (pkg/kubelet/eviction), trailing spaces included.
const (
	ReasonEvictionThresholdMet = "EvictionThresholdMet"
	nodeLowMessage             = "The node was low on resource: %s. Threshold quantity: %s, available: %s. "
	containerUsageMessage      = "Container %s was using %s, request is %s, has larger consumption of %s. "
)

// DiskPressureConfig configures a DiskPressure.
type DiskPressureConfig struct {
	// Spec is the node's spec, defaulted.
	Spec    *rbnv1.RemoteBuildNodeSpec
	Host    *Host
	Pods    *Pods
	ImageGC *ImageGC
	// Event reports on the node.
	Event func(eventType, reason, message string)
	Log   *slog.Logger
	Clock clock.WithTicker

	// facts, pods and images stand in for Host's, Pods' and ImageGC's in
	// unit tests.
	facts  func() *podman.HostInfo
	pods   evictablePods
	images func(context.Context) (int64, error)
}

// evictablePods is what a DiskPressure asks of the node's pods.
type evictablePods interface {
	setDiskPressure(bool)
	diskUsages(since time.Time) []podDiskUsage
	reclaimEnded() int
	evict(uid types.UID, message string) bool
	stopped(uid types.UID) bool
	evictionCounts() map[string]uint64
}

// podDiskUsage is a running pod's local storage as its worker last
// measured it (evict.go), with what ranks it for eviction.
type podDiskUsage struct {
	uid      types.UID
	name     string // namespace/name
	priority int32
	at       time.Time
	// total is the pod's writable layers, logs and disk emptyDirs; request
	// its ephemeral-storage request.
	total, request int64
	// containers holds each running container's use (writable layer and
	// log) and request.
	containers map[string]containerDiskUsage
}

type containerDiskUsage struct{ used, request int64 }

// DiskPressure is a node's eviction manager for its host's disk, as the
// kubelet's (pkg/kubelet/eviction) for nodefs/imagefs.available: while the
// podman store's file system has less available than the node's
// spec.diskPressure.availableBelow, it first removes the unused images and
// the containers of the node's ended pods, then, when that is not enough,
// evicts one pod (Failed, reason Evicted, no grace period), waits until it
// has stopped and the host's figures have been read again, and looks
// again. The node's Pods measure their local storage meanwhile, which
// ranks them as the kubelet ranks pods under disk pressure: those using
// more than they requested first, then lower priority, then more use above
// the request.
type DiskPressure struct {
	cfg DiskPressureConfig

	mu    sync.Mutex
	under bool
	since time.Time // pressure began
	// victim is the pod last evicted, until it has stopped; seq counts the
	// host's fact changes; while waiting, the next eviction waits for
	// figures read after the count was waitSeq (the victim stopped, or
	// ended pods' containers were removed).
	victim  types.UID
	seq     uint64
	waiting bool
	waitSeq uint64
}

// NewDiskPressure returns cfg's eviction manager; Run runs it.
func NewDiskPressure(cfg DiskPressureConfig) *DiskPressure {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.facts == nil && cfg.Host != nil {
		cfg.facts = func() *podman.HostInfo { info, _ := cfg.Host.Snapshot(); return info }
	}
	if cfg.pods == nil && cfg.Pods != nil {
		cfg.pods = cfg.Pods
	}
	if cfg.images == nil && cfg.ImageGC != nil {
		cfg.images = cfg.ImageGC.FreeUnused
	}
	return &DiskPressure{cfg: cfg}
}

// Evictions counts the pods evicted for disk pressure since Run began (the
// node's kubelet_evictions for nodefs.available).
func (d *DiskPressure) Evictions() uint64 {
	return d.cfg.pods.evictionCounts()[signalNodeFsAvailable]
}

// Run looks at the host's disk whenever its facts change, and every
// evictionMonitoringPeriod while under pressure, until ctx ends.
func (d *DiskPressure) Run(ctx context.Context) error {
	t := d.cfg.Clock.NewTicker(evictionMonitoringPeriod)
	defer t.Stop()
	for {
		changed := d.cfg.Host.Changed()
		d.synchronize(ctx)
		select {
		case <-ctx.Done():
			d.cfg.pods.setDiskPressure(false)
			return nil
		case <-t.C():
		case <-changed:
			d.mu.Lock()
			d.seq++
			d.mu.Unlock()
		}
	}
}

// synchronize does what is due once: note whether the host is under
// pressure, reclaim images, and evict a pod when that was not enough.
func (d *DiskPressure) synchronize(ctx context.Context) {
	disk := node.DiskPressure(d.cfg.Spec, d.cfg.facts())
	d.mu.Lock()
	if disk.Under != d.under {
		d.under, d.since = disk.Under, d.cfg.Clock.Now()
		d.cfg.Log.Info("disk pressure", "under", disk.Under, "availableBytes", disk.Available, "availableBelow", disk.Below)
	}
	since := d.since
	d.mu.Unlock()
	d.cfg.pods.setDiskPressure(disk.Under)
	if !disk.Under {
		return
	}
	freed, err := d.cfg.images(ctx)
	if err != nil {
		d.cfg.Log.Warn("disk pressure: removing unused images", "err", err)
	}
	reclaimed := d.cfg.pods.reclaimEnded()
	if disk.Available+uint64(max(freed, 0)) >= disk.Threshold {
		d.cfg.Log.Info("disk pressure: unused images removed, enough", "freedBytes", freed)
		return
	}
	if reclaimed > 0 {
		// What they held shows in the next figures.
		d.cfg.Log.Info("disk pressure: removing the containers of ended pods", "pods", reclaimed)
		d.mu.Lock()
		d.waiting, d.waitSeq = true, d.seq
		d.mu.Unlock()
		return
	}
	if !d.readyToEvict() {
		return
	}
	usages := d.cfg.pods.diskUsages(since)
	if len(usages) == 0 {
		d.cfg.Log.Debug("disk pressure: no running pod measured yet to evict")
		return
	}
	rankForDiskPressure(usages)
	v := usages[0]
	thresholdQ := resource.NewQuantity(int64(disk.Threshold), resource.BinarySI)
	availQ := resource.NewQuantity(int64(disk.Available), resource.BinarySI)
	d.cfg.Event(corev1.EventTypeWarning, ReasonEvictionThresholdMet, "Attempting to reclaim ephemeral-storage")
	if !d.cfg.pods.evict(v.uid, evictionMessage(v, thresholdQ, availQ)) {
		return // gone meanwhile: the next look ranks again
	}
	d.cfg.Log.Warn("disk pressure: pod evicted", "pod", v.name, "usedBytes", v.total, "requestBytes", v.request)
	d.mu.Lock()
	d.victim = v.uid
	d.mu.Unlock()
}

// readyToEvict says whether the pod evicted last has stopped and the host's
// figures were read since (and since ended pods' containers were removed),
// as the kubelet waits for an evicted pod's cleanup before evicting
// another.
func (d *DiskPressure) readyToEvict() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.victim != "" {
		if !d.cfg.pods.stopped(d.victim) {
			return false
		}
		d.victim, d.waiting, d.waitSeq = "", true, d.seq
	}
	return !d.waiting || d.seq > d.waitSeq
}

// rankForDiskPressure orders pods as the kubelet's rankDiskPressureFunc:
// those using more than their ephemeral-storage request first, then by
// priority (lowest first), then by use above the request (most first).
func rankForDiskPressure(pods []podDiskUsage) {
	slices.SortStableFunc(pods, func(a, b podDiskUsage) int {
		aOver, bOver := a.total > a.request, b.total > b.request
		if aOver != bOver {
			if aOver {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.priority, b.priority), cmp.Compare(b.total-b.request, a.total-a.request), strings.Compare(a.name, b.name))
	})
}

// evictionMessage is the kubelet's message for a pod evicted for
// ephemeral-storage: the node's figures, and each container using more
// than it requested.
func evictionMessage(u podDiskUsage, threshold, avail *resource.Quantity) string {
	var b strings.Builder
	fmt.Fprintf(&b, nodeLowMessage, corev1.ResourceEphemeralStorage, threshold.String(), avail.String())
	names := make([]string, 0, len(u.containers))
	for name := range u.containers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if c := u.containers[name]; c.used > c.request {
			fmt.Fprintf(&b, containerUsageMessage, name,
				resource.NewQuantity(c.used, resource.BinarySI).String(),
				resource.NewQuantity(c.request, resource.BinarySI).String(),
				corev1.ResourceEphemeralStorage)
		}
	}
	return b.String()
}

// setDiskPressure tells the node's pod workers whether the host is under
// disk pressure: while it is, each running pod measures its local storage
// (checkStorage) for the ranking; those running are kicked when it begins.
func (p *Pods) setDiskPressure(under bool) {
	if p.diskPressure.Swap(under) == under || !under {
		return
	}
	for _, w := range p.podWorkers() {
		w.poke()
	}
}

// diskUsages lists the measurements of the pods that have not ended, taken
// since since.
func (p *Pods) diskUsages(since time.Time) []podDiskUsage {
	var out []podDiskUsage
	for _, w := range p.podWorkers() {
		u := w.diskUsage.Load()
		if u == nil || u.at.Before(since) || w.hasEnded() {
			continue
		}
		out = append(out, *u)
	}
	return out
}

// reclaimEnded asks the workers of the ended pods that are not being
// deleted to remove their containers and podman pod from the host (the
// kubelet removes a terminated pod's containers and sandbox under disk
// pressure); it returns how many were asked this time.
func (p *Pods) reclaimEnded() int {
	n := 0
	for _, w := range p.podWorkers() {
		w.mu.Lock()
		ask := !w.reclaimNow && w.deleting == nil && pod.Ended(w.pod.Status.Phase)
		if ask {
			w.reclaimNow = true
		}
		w.mu.Unlock()
		if ask {
			n++
			w.poke()
		}
	}
	return n
}

// evict asks the worker of the pod with uid to evict it with message; false
// when there is none.
func (p *Pods) evict(uid types.UID, message string) bool {
	w := p.workerOf(uid)
	if w == nil {
		return false
	}
	w.mu.Lock()
	w.evictNow = &reason{reasonEvicted, message}
	w.mu.Unlock()
	p.countEviction(signalNodeFsAvailable)
	w.poke()
	return true
}

// countEviction counts an eviction of one of the node's pods for signal
// (kubelet_evictions).
func (p *Pods) countEviction(signal string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.evictions == nil {
		p.evictions = map[string]uint64{}
	}
	p.evictions[signal]++
}

// evictionCounts returns the node's evictions by signal so far.
func (p *Pods) evictionCounts() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.evictions)
}

// stopped says whether the pod with uid has ended or gone.
func (p *Pods) stopped(uid types.UID) bool {
	w := p.workerOf(uid)
	return w == nil || w.hasEnded()
}
