package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/imageref"
	"github.com/remote-build-nodes/rbn/internal/podman"
)

// imageGCPeriod is how often a node's images are looked at, as the
// kubelet's ImageGCPeriod; a host's store crossing the high threshold
// between two looks starts one at once.
const imageGCPeriod = 5 * time.Minute

// Reasons of the image garbage collection's node events: the kubelet's.
const (
	ReasonFreeDiskSpaceFailed = "FreeDiskSpaceFailed"
	ReasonImageGCFailed       = "ImageGCFailed"
)

// Why an image was removed (the kubelet's kubelet_image_garbage_collected_total
// reasons).
const (
	ImageGCReasonSpace = "space"
	ImageGCReasonAge   = "age"
)

// imageStore is what the image garbage collection asks of a host's podman.
type imageStore interface {
	ListImageSummaries(ctx context.Context) ([]podman.ImageSummary, error)
	ListContainers(ctx context.Context, labels map[string]string) ([]podman.ContainerSummary, error)
	RemoveImage(ctx context.Context, id string) error
}

// ImageGCConfig configures an ImageGC.
type ImageGCConfig struct {
	// Policy is the node's spec.imageGC, defaulted.
	Policy *rbnv1.ImageGCSpec
	Host   *Host
	// Named lists the images that the node's pods which have not ended name:
	// they are kept, in use or not (a pod may be about to start).
	Named func() []string
	// Event reports on the node.
	Event func(eventType, reason, message string)
	Log   *slog.Logger
	Clock clock.WithTicker

	// store and usage stand in for Host's in unit tests.
	store imageStore
	usage func() (used, total uint64, ok bool)
}

// ImageGCStats are an ImageGC's totals since it started.
type ImageGCStats struct {
	// Removed counts the images removed, by reason (ImageGCReasonSpace or
	// ImageGCReasonAge); Bytes sums their sizes.
	Removed map[string]uint64
	Bytes   uint64
	// Failures counts the collections that could not free what they had to
	// or failed part way.
	Failures uint64
}

// ImageGC is a node's image garbage collection, as the kubelet's
// (pkg/kubelet/images/image_gc_manager.go): it notes when each image of the
// host's store was first seen and last used by a container; when the
// store's file system is fuller than the high threshold it removes unused
// images, least recently used first, until the low threshold is reached, and
// it removes images unused for longer than the maximum age. Images younger
// than the minimum age, pinned ones and those the node's pods name stay.
type ImageGC struct {
	cfg    ImageGCConfig
	pinned []string // normalised

	// collecting serialises Collect and FreeUnused.
	collecting sync.Mutex

	mu      sync.Mutex
	records map[string]*imageRecord // by image ID
	stats   ImageGCStats
}

// imageRecord is what the collection knows of one image.
type imageRecord struct {
	firstSeen time.Time
	lastUsed  time.Time // zero: never seen in use
	size      int64
	names     []string
	inUse     bool
	infra     bool
}

// NewImageGC returns cfg's collection; Run runs it.
func NewImageGC(cfg ImageGCConfig) *ImageGC {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.store == nil && cfg.Host != nil {
		cfg.store = cfg.Host.Podman()
	}
	if cfg.usage == nil && cfg.Host != nil {
		cfg.usage = func() (uint64, uint64, bool) {
			info, _ := cfg.Host.Snapshot()
			if info == nil || info.StorageTotal == 0 {
				return 0, 0, false
			}
			// In use: all but what is available, as the kubelet's image
			// GC counts it (capacity - available).
			return info.StorageTotal - min(info.StorageAvailable, info.StorageTotal), info.StorageTotal, true
		}
	}
	g := &ImageGC{cfg: cfg, records: map[string]*imageRecord{}, stats: ImageGCStats{Removed: map[string]uint64{}}}
	for _, ref := range cfg.Policy.Pinned {
		if n, err := imageref.Normalize(ref); err == nil {
			g.pinned = append(g.pinned, n)
		}
	}
	return g
}

// Stats returns the collection's totals.
func (g *ImageGC) Stats() ImageGCStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.Removed = maps.Clone(g.stats.Removed)
	return s
}

// Run collects once the host's facts are known, then every imageGCPeriod
// and whenever the store's use crosses the high threshold, until ctx ends.
func (g *ImageGC) Run(ctx context.Context) error {
	t := g.cfg.Clock.NewTicker(imageGCPeriod)
	defer t.Stop()
	due, wasAbove := true, false
	for {
		hostChanged := g.cfg.Host.Changed()
		if g.cfg.Host.ready() {
			_, _, above := g.above()
			if due || (above && !wasAbove) {
				// A failure is reported; the next period tries again.
				_ = g.Collect(ctx)
				due = false
			}
			wasAbove = above
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			due = true
		case <-hostChanged:
		}
	}
}

// above reads the store's use and says whether it is at or above the high
// threshold (false while the host's figures are unknown).
func (g *ImageGC) above() (used, total uint64, above bool) {
	used, total, ok := g.cfg.usage()
	return used, total, ok && used*100 >= total*uint64(*g.cfg.Policy.HighThresholdPercent)
}

// Collect looks at the host's images once: notes their use, removes those
// over the maximum age, then frees space when the store is above the high
// threshold. A failure is reported on the node (the kubelet's events) and
// returned.
func (g *ImageGC) Collect(ctx context.Context) error {
	g.collecting.Lock()
	defer g.collecting.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	now := g.cfg.Clock.Now()
	if err := g.detect(ctx, now); err != nil {
		g.failed(ReasonImageGCFailed, fmt.Sprintf("image garbage collection failed: %v", err))
		return err
	}
	// The images that could not be removed are reported together.
	var errs []error
	removed := 0
	defer func() {
		if removed > 0 && g.cfg.Host != nil {
			g.cfg.Host.RefreshImages(ctx) // rbn-extender's view of the host
		}
	}()
	if maxAge := g.cfg.Policy.MaximumAge.Duration; maxAge > 0 {
		ids := g.candidates(now, func(r *imageRecord) bool { return now.Sub(r.lastSeenUsed()) > maxAge })
		_, n, err := g.removeUntil(ctx, ids, ImageGCReasonAge, math.MaxInt64)
		removed, errs = removed+n, append(errs, err)
	}
	var goal, freed int64
	if used, total, above := g.above(); above {
		goal = int64(used) - int64(total)*int64(*g.cfg.Policy.LowThresholdPercent)/100
		var n int
		var err error
		freed, n, err = g.removeUntil(ctx, g.candidates(now, nil), ImageGCReasonSpace, goal)
		removed, errs = removed+n, append(errs, err)
		g.cfg.Log.Info("image garbage collection", "usedBytes", used, "totalBytes", total, "goalBytes", goal, "freedBytes", freed)
	}
	if err := errors.Join(errs...); err != nil {
		g.failed(ReasonImageGCFailed, fmt.Sprintf("image garbage collection failed: %v", err))
		return err
	}
	if freed < goal {
		err := &FreeDiskSpaceError{Goal: goal, Freed: freed}
		g.failed(ReasonFreeDiskSpaceFailed, err.Error())
		return err
	}
	return nil
}

// FreeUnused removes every image that may go (the kubelet's
// DeleteUnusedImages, its eviction manager's first reclaim under disk
// pressure): unused, older than the minimum age, neither pinned nor named
// by a pod that has not ended, whatever the thresholds. It returns the
// bytes freed; images that could not be removed are passed over and
// reported together.
func (g *ImageGC) FreeUnused(ctx context.Context) (int64, error) {
	g.collecting.Lock()
	defer g.collecting.Unlock()
	now := g.cfg.Clock.Now()
	if err := g.detect(ctx, now); err != nil {
		return 0, err
	}
	freed, n, err := g.removeUntil(ctx, g.candidates(now, nil), ImageGCReasonSpace, math.MaxInt64)
	if n > 0 && g.cfg.Host != nil {
		g.cfg.Host.RefreshImages(ctx) // rbn-extender's view of the host
	}
	return freed, err
}

// removeUntil removes the images ids in order, for reason, until their
// sizes add up to goal (math.MaxInt64: all of them). An image that cannot be
// removed (a container made from it since the listing, say) is passed over,
// as the kubelet does, its error joined with the others. It returns the
// bytes freed and how many images went.
func (g *ImageGC) removeUntil(ctx context.Context, ids []string, reason string, goal int64) (freed int64, removed int, _ error) {
	var errs []error
	for _, id := range ids {
		if freed >= goal {
			break
		}
		size, err := g.remove(ctx, id, reason)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
		freed += size
	}
	return freed, removed, errors.Join(errs...)
}

// FreeDiskSpaceError: a collection found too few images it could remove.
type FreeDiskSpaceError struct{ Goal, Freed int64 }

func (e *FreeDiskSpaceError) Error() string {
	// The kubelet's words, so that what operators search for matches.
	return fmt.Sprintf("Failed to garbage collect required amount of images. Attempted to free %d bytes, but only found %d bytes eligible to free.", e.Goal, e.Freed)
}

func (g *ImageGC) failed(reason, msg string) {
	g.mu.Lock()
	g.stats.Failures++
	g.mu.Unlock()
	g.cfg.Log.Warn("image garbage collection", "reason", reason, "msg", msg)
	if g.cfg.Event != nil {
		g.cfg.Event(corev1.EventTypeWarning, reason, msg)
	}
}

// detect lists the host's images and containers and updates the records.
func (g *ImageGC) detect(ctx context.Context, now time.Time) error {
	imgs, err := g.cfg.store.ListImageSummaries(ctx)
	if err != nil {
		return err
	}
	ctrs, err := g.cfg.store.ListContainers(ctx, nil)
	if err != nil {
		return err
	}
	used, infra := map[string]bool{}, map[string]bool{}
	for _, c := range ctrs {
		used[c.ImageID] = true
		if c.Infra {
			infra[c.ImageID] = true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for _, im := range imgs {
		seen[im.ID] = true
		r := g.records[im.ID]
		if r == nil {
			r = &imageRecord{firstSeen: now}
			g.records[im.ID] = r
		}
		r.size, r.names, r.inUse = im.Size, im.Names, used[im.ID]
		r.infra = r.infra || infra[im.ID]
		if r.inUse {
			r.lastUsed = now
		}
	}
	for id := range g.records {
		if !seen[id] {
			delete(g.records, id)
		}
	}
	return nil
}

// lastSeenUsed is when the image was last in use, or first seen if never.
func (r *imageRecord) lastSeenUsed() time.Time {
	if r.lastUsed.IsZero() {
		return r.firstSeen
	}
	return r.lastUsed
}

// candidates lists the images that may be removed and that also pass keep
// (nil: all), least recently used first (then first seen, then ID).
func (g *ImageGC) candidates(now time.Time, keep func(*imageRecord) bool) []string {
	named := map[string]bool{}
	if g.cfg.Named != nil {
		for _, ref := range g.cfg.Named() {
			if n, err := imageref.Normalize(ref); err == nil {
				named[n] = true
			}
		}
	}
	for _, p := range g.pinned {
		named[p] = true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var ids []string
	for id, r := range g.records {
		if r.inUse || r.infra || now.Sub(r.firstSeen) < g.cfg.Policy.MinimumAge.Duration || (keep != nil && !keep(r)) {
			continue
		}
		if slices.ContainsFunc(r.names, func(n string) bool { return named[n] || named[normalized(n)] }) {
			continue
		}
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		ra, rb := g.records[a], g.records[b]
		return cmp.Or(ra.lastSeenUsed().Compare(rb.lastSeenUsed()), ra.firstSeen.Compare(rb.firstSeen), cmp.Compare(a, b))
	})
	return ids
}

// normalized is ref as imageref normalises it, or ref when it cannot.
func normalized(ref string) string {
	if n, err := imageref.Normalize(ref); err == nil {
		return n
	}
	return ref
}

// remove removes one image and counts it; its size is what it frees.
func (g *ImageGC) remove(ctx context.Context, id, reason string) (int64, error) {
	g.mu.Lock()
	r := g.records[id]
	g.mu.Unlock()
	if err := g.cfg.store.RemoveImage(ctx, id); err != nil {
		return 0, err
	}
	g.cfg.Log.Info("image removed", "id", id, "names", r.names, "sizeBytes", r.size, "reason", reason)
	g.mu.Lock()
	delete(g.records, id)
	g.stats.Removed[reason]++
	g.stats.Bytes += uint64(max(r.size, 0))
	g.mu.Unlock()
	return r.size, nil
}
