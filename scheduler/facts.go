package scheduler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// Opt is a value that may be unknown.
type Opt[T any] struct {
	Value T
	Known bool
}

func known[T any](v T) Opt[T] { return Opt[T]{Value: v, Known: true} }

// Published is rbn-kubelet's HostFacts as parsed once per Node change.
type Published struct {
	ObservedAt       time.Time
	Healthy          bool
	StorageFreeBytes int64
	// TmpFreeBytes is -1 when rbn-kubelet could not measure it.
	TmpFreeBytes int64
	// VolumeFreeBytes is the space a new rbn.dev/host-local volume may
	// have on the host; -1 when unknown, also when the annotation lacks the
	// field (an rbn-kubelet older than it).
	VolumeFreeBytes int64
	RunningPods     int
	RecentFailures  int
	Images          ImageSet
}

// publishedJSON is HostFacts as the annotation carries it, with the fields
// whose absence must read as unknown rather than as Go's zero: a missing
// volumeFreeBytes is not "0 bytes free" (that would filter every pod with a
// claim off hosts whose rbn-kubelet predates the field). The outer field
// shadows HostFacts' of the same JSON name.
type publishedJSON struct {
	rbnv1.HostFacts
	VolumeFreeBytes *int64 `json:"volumeFreeBytes"`
}

// ParsePublished decodes the rbn.dev/host-facts annotation. Unknown fields
// are accepted: a newer rbn-kubelet may publish more than this extender
// reads.
func ParsePublished(value string) (*Published, error) {
	var f publishedJSON
	if err := json.Unmarshal([]byte(value), &f); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", rbnv1.AnnotationHostFacts, err)
	}
	if f.ObservedAt.IsZero() {
		return nil, fmt.Errorf("annotation %s: observedAt is missing", rbnv1.AnnotationHostFacts)
	}
	volumeFree := int64(-1)
	if f.VolumeFreeBytes != nil {
		volumeFree = *f.VolumeFreeBytes
	}
	return &Published{
		ObservedAt:       f.ObservedAt.Time,
		Healthy:          f.Healthy,
		StorageFreeBytes: f.StorageFreeBytes,
		TmpFreeBytes:     f.TmpFreeBytes,
		VolumeFreeBytes:  volumeFree,
		RunningPods:      f.RunningPods,
		RecentFailures:   f.RecentFailures,
		Images:           NewImageSet(f.Images),
	}, nil
}

// pin is one field of an override: Set when the override names the field;
// then Value holds the new value, or is unknown for JSON null.
type pin[T any] struct {
	Set   bool
	Value Opt[T]
}

// Override is a parsed rbn.dev/host-facts-override annotation.
type Override struct {
	Healthy          pin[bool]
	StorageFreeBytes pin[int64]
	TmpFreeBytes     pin[int64]
	VolumeFreeBytes  pin[int64]
	RunningPods      pin[int]
	RecentFailures   pin[int]
	Images           pin[ImageSet]
	// Fields lists the names the override sets, for people.
	Fields []string
}

// ParseOverride decodes the override annotation strictly.
func ParseOverride(value string) (*Override, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("annotation %s: must be a JSON object: %w", rbnv1.AnnotationHostFactsOverride, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("annotation %s: must be a JSON object, not null", rbnv1.AnnotationHostFactsOverride)
	}
	o := &Override{}
	var errs []error
	for key, msg := range raw {
		var err error
		switch key {
		case "healthy":
			err = setPin(&o.Healthy, msg, func(v bool) bool { return v })
		case "storageFreeBytes":
			err = setPin(&o.StorageFreeBytes, msg, func(v int64) int64 { return v })
		case "tmpFreeBytes":
			err = setPin(&o.TmpFreeBytes, msg, func(v int64) int64 { return v })
		case "volumeFreeBytes":
			err = setPin(&o.VolumeFreeBytes, msg, func(v int64) int64 { return v })
		case "runningPods":
			err = setPin(&o.RunningPods, msg, func(v int) int { return v })
		case "recentFailures":
			err = setPin(&o.RecentFailures, msg, func(v int) int { return v })
		case "images":
			err = setPin(&o.Images, msg, NewImageSet)
		case "observedAt":
			err = fmt.Errorf("cannot be overridden: overridden fields never go stale")
		default:
			err = fmt.Errorf("unknown field")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		o.Fields = append(o.Fields, key)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("annotation %s: %w", rbnv1.AnnotationHostFactsOverride, joinSorted(errs))
	}
	slices.Sort(o.Fields)
	return o, nil
}

// joinSorted joins errs in message order: map iteration must not make the
// same annotation produce different messages.
func joinSorted(errs []error) error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// setPin decodes msg as J (or null) into p, converting with conv.
func setPin[J, T any](p *pin[T], msg json.RawMessage, conv func(J) T) error {
	p.Set = true
	if bytes.Equal(bytes.TrimSpace(msg), []byte("null")) {
		return nil
	}
	var v J
	if err := json.Unmarshal(msg, &v); err != nil {
		return err
	}
	p.Value = known(conv(v))
	return nil
}

func (p pin[T]) apply(dst *Opt[T]) {
	if p.Set {
		*dst = p.Value
	}
}

// Facts are what the decisions may rely on for one host at one instant.
type Facts struct {
	Healthy          Opt[bool]
	StorageFreeBytes Opt[int64]
	TmpFreeBytes     Opt[int64]
	// VolumeFreeBytes is the space a new rbn.dev/host-local volume may have.
	VolumeFreeBytes Opt[int64]
	RunningPods     Opt[int]
	RecentFailures  Opt[int]
	// Images is unknown when Known is false; Value is then nil.
	Images Opt[ImageSet]

	// ObservedAt is the published facts' time (zero: none published).
	ObservedAt time.Time
	// Stale: published facts exist but are older than the maximum age.
	Stale bool
}

// Resolve combines published facts and an override into what holds at now.
// Either may be nil.
//
// Published facts older than maxAge tell nothing about free space, images or
// load any more: those become unknown, and decisions that need them are
// skipped (the host is not filtered on disk, gets no image preference). A
// stale Healthy=false is kept: a host last seen failing, whose facts stopped
// coming, has not been seen recovering; excluding it costs capacity, trusting
// it costs failed builds. (rbn-kubelet also sets the Node's Ready condition,
// so a silent rbn-kubelet makes the node NotReady and tainted within its
// lease duration anyway.)
//
// Fields the override sets apply whatever the published facts' age.
func Resolve(p *Published, o *Override, now time.Time, maxAge time.Duration) Facts {
	var f Facts
	if p != nil {
		f.ObservedAt = p.ObservedAt
		if now.Sub(p.ObservedAt) <= maxAge {
			f.Healthy = known(p.Healthy)
			f.StorageFreeBytes = known(p.StorageFreeBytes)
			if p.TmpFreeBytes >= 0 {
				f.TmpFreeBytes = known(p.TmpFreeBytes)
			}
			if p.VolumeFreeBytes >= 0 {
				f.VolumeFreeBytes = known(p.VolumeFreeBytes)
			}
			f.RunningPods = known(p.RunningPods)
			f.RecentFailures = known(p.RecentFailures)
			f.Images = known(p.Images)
		} else {
			f.Stale = true
			if !p.Healthy {
				f.Healthy = known(false)
			}
		}
	}
	if o != nil {
		o.Healthy.apply(&f.Healthy)
		o.StorageFreeBytes.apply(&f.StorageFreeBytes)
		o.TmpFreeBytes.apply(&f.TmpFreeBytes)
		if f.TmpFreeBytes.Known && f.TmpFreeBytes.Value < 0 {
			f.TmpFreeBytes = Opt[int64]{}
		}
		o.VolumeFreeBytes.apply(&f.VolumeFreeBytes)
		if f.VolumeFreeBytes.Known && f.VolumeFreeBytes.Value < 0 {
			f.VolumeFreeBytes = Opt[int64]{}
		}
		o.RunningPods.apply(&f.RunningPods)
		o.RecentFailures.apply(&f.RecentFailures)
		o.Images.apply(&f.Images)
	}
	return f
}
