// Package server is rbn-extender's HTTP face to kube-scheduler: it decodes
// the scheduler's extender requests (k8s.io/kube-scheduler/extender/v1,
// JSON with Go field names), calls the decisions of package scheduler on the
// nodes the request names, and encodes the answer. It decides nothing
// itself.
//
//	POST /filter            ExtenderArgs -> ExtenderFilterResult
//	POST /prioritize        ExtenderArgs -> HostPriorityList
//	GET  /healthz           the process serves
//	GET  /readyz            the caches have synced (503 before)
//	GET  /debug/nodes/NAME  what the extender knows of a node, as JSON
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	"github.com/remote-build-nodes/rbn/scheduler"
)

// maxRequestBytes bounds a request body. A nodeCacheCapable request is a pod
// and node names; a full node list of a large cluster stays well below.
const maxRequestBytes = 64 << 20

// Source is the cluster as the decisions see it (package state).
type Source interface {
	// Ready: the caches have synced.
	Ready() bool
	// Claims are the pods' claims and storage classes, for the filter's
	// volume space check.
	scheduler.Claims
	// Views appends a view of each named node to dst, in order.
	Views(names []string, dst []scheduler.NodeView) []scheduler.NodeView
	// View is one node's view; false when the node is unknown.
	View(name string) (scheduler.NodeView, bool)
}

// Config configures the handler.
type Config struct {
	Source Source
	Policy scheduler.Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger logs each call at debug level; nil discards.
	Logger *slog.Logger
	// Metrics records each call; nil records nothing.
	Metrics *Metrics
}

type handler struct {
	src     Source
	policy  scheduler.Policy
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics
}

// New returns the extender's HTTP handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Source == nil {
		return nil, errors.New("server: a Source is required")
	}
	h := &handler{src: cfg.Source, policy: cfg.Policy, now: cfg.Now, log: cfg.Logger, metrics: cfg.Metrics}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /filter", h.filter)
	mux.HandleFunc("POST /prioritize", h.prioritize)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /debug/nodes/{name}", h.debugNode)
	return mux, nil
}

func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	if !h.src.Ready() {
		writeText(w, http.StatusServiceUnavailable, "caches (nodes, pods, claims, storage classes) not synced yet")
		return
	}
	writeText(w, http.StatusOK, "ok")
}

// decode reads ExtenderArgs and the candidate node names: NodeNames when the
// scheduler runs the extender nodeCacheCapable (as configured), else the
// names of the Nodes it sent.
func (h *handler) decode(w http.ResponseWriter, r *http.Request) (*args, *corev1.Pod, []string, int, error) {
	if !h.src.Ready() {
		return nil, nil, nil, http.StatusServiceUnavailable, errors.New("rbn-extender: caches (nodes, pods, claims, storage classes) not synced yet")
	}
	a, err := decodeArgs(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		return nil, nil, nil, http.StatusBadRequest, fmt.Errorf("rbn-extender: decode ExtenderArgs: %w", err)
	}
	if a.Pod == nil {
		return nil, nil, nil, http.StatusBadRequest, errors.New("rbn-extender: ExtenderArgs without Pod")
	}
	pod := a.Pod.pod()
	switch {
	case a.NodeNames != nil:
		return a, pod, *a.NodeNames, 0, nil
	case a.Nodes != nil:
		names := make([]string, len(a.Nodes.Items))
		for i := range a.Nodes.Items {
			names[i] = a.Nodes.Items[i].Name
		}
		return a, pod, names, 0, nil
	default:
		return a, pod, nil, 0, nil
	}
}

func (h *handler) filter(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	args, pod, names, status, err := h.decode(w, r)
	if err != nil {
		writeJSON(w, status, extenderv1.ExtenderFilterResult{Error: err.Error()})
		h.metrics.observe("filter", status, time.Since(start))
		return
	}
	views := h.src.Views(names, make([]scheduler.NodeView, 0, len(names)))
	needs := scheduler.NeedsOf(pod)
	// Only the filter looks at volumes: prioritize ranks the hosts that
	// passed, all of which have room.
	needs.VolumeBytes = scheduler.VolumeBytes(pod, h.src)
	res := scheduler.Filter(needs, views, h.now(), h.policy)
	out := extenderv1.ExtenderFilterResult{
		FailedNodes:                extenderv1.FailedNodesMap{},
		FailedAndUnresolvableNodes: res.Failed,
	}
	if args.NodeNames != nil {
		out.NodeNames = &res.Passed
	} else if args.Nodes != nil {
		// Not nodeCacheCapable: the scheduler reads the Nodes back.
		passed := make(map[string]bool, len(res.Passed))
		for _, n := range res.Passed {
			passed[n] = true
		}
		out.Nodes = &corev1.NodeList{}
		for i := range args.Nodes.Items {
			if passed[args.Nodes.Items[i].Name] {
				out.Nodes.Items = append(out.Nodes.Items, args.Nodes.Items[i])
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	h.metrics.observe("filter", http.StatusOK, time.Since(start))
	h.metrics.filtered(len(res.Passed), len(res.Failed))
	h.log.Debug("filter", "pod", pod.Namespace+"/"+pod.Name, "nodes", len(names), "volumeBytes", needs.VolumeBytes,
		"passed", len(res.Passed), "failed", res.Failed, "duration", time.Since(start))
}

func (h *handler) prioritize(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, pod, names, status, err := h.decode(w, r)
	if err != nil {
		// HostPriorityList has no error field: the status says it.
		writeText(w, status, err.Error())
		h.metrics.observe("prioritize", status, time.Since(start))
		return
	}
	views := h.src.Views(names, make([]scheduler.NodeView, 0, len(names)))
	list := scheduler.Prioritize(scheduler.NeedsOf(pod), views, h.now(), h.policy)
	writeJSON(w, http.StatusOK, list)
	h.metrics.observe("prioritize", http.StatusOK, time.Since(start))
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		scores := make(map[string]int64, len(list))
		for _, hp := range list {
			scores[hp.Host] = hp.Score
		}
		h.log.Debug("prioritize", "pod", pod.Namespace+"/"+pod.Name, "scores", scores, "duration", time.Since(start))
	}
}

// NodeDebug is what GET /debug/nodes/NAME returns.
type NodeDebug struct {
	Name            string `json:"name"`
	RemoteBuildNode bool   `json:"remoteBuildNode"`
	Draining        bool   `json:"draining"`
	Arch            string `json:"arch,omitempty"`
	BoundPods       int    `json:"boundPods"`
	// Facts are the facts in force now, after staleness and override.
	Facts          FactsDebug `json:"facts"`
	PublishedError string     `json:"publishedError,omitempty"`
	OverrideError  string     `json:"overrideError,omitempty"`
	// Overridden lists the fields the override annotation sets.
	Overridden []string `json:"overridden,omitempty"`
	// FilterReason is why a pod that declares nothing would be filtered out.
	FilterReason string `json:"filterReason,omitempty"`
}

// FactsDebug shows Facts with unknown values as null.
type FactsDebug struct {
	ObservedAt       *time.Time `json:"observedAt,omitempty"`
	Stale            bool       `json:"stale"`
	Healthy          *bool      `json:"healthy"`
	StorageFreeBytes *int64     `json:"storageFreeBytes"`
	TmpFreeBytes     *int64     `json:"tmpFreeBytes"`
	VolumeFreeBytes  *int64     `json:"volumeFreeBytes"`
	RunningPods      *int       `json:"runningPods"`
	RecentFailures   *int       `json:"recentFailures"`
	Images           []string   `json:"images"`
}

func ptr[T any](o scheduler.Opt[T]) *T {
	if !o.Known {
		return nil
	}
	return &o.Value
}

func (h *handler) debugNode(w http.ResponseWriter, r *http.Request) {
	v, ok := h.src.View(r.PathValue("name"))
	if !ok {
		writeText(w, http.StatusNotFound, "no such node in the cache")
		return
	}
	now := h.now()
	f := v.Info.Facts(now, h.policy.MaxFactsAge)
	d := NodeDebug{
		Name:            v.Name,
		RemoteBuildNode: v.Info.RemoteBuildNode,
		Draining:        v.Info.Draining,
		Arch:            v.Info.Arch,
		BoundPods:       v.BoundPods,
		Facts: FactsDebug{
			Stale:            f.Stale,
			Healthy:          ptr(f.Healthy),
			StorageFreeBytes: ptr(f.StorageFreeBytes),
			TmpFreeBytes:     ptr(f.TmpFreeBytes),
			VolumeFreeBytes:  ptr(f.VolumeFreeBytes),
			RunningPods:      ptr(f.RunningPods),
			RecentFailures:   ptr(f.RecentFailures),
		},
	}
	if !f.ObservedAt.IsZero() {
		d.Facts.ObservedAt = &f.ObservedAt
	}
	if f.Images.Known {
		d.Facts.Images = make([]string, 0, len(f.Images.Value))
		for im := range f.Images.Value {
			d.Facts.Images = append(d.Facts.Images, im)
		}
		slices.Sort(d.Facts.Images)
	}
	if v.Info.PublishedErr != nil {
		d.PublishedError = v.Info.PublishedErr.Error()
	}
	if v.Info.OverrideErr != nil {
		d.OverrideError = v.Info.OverrideErr.Error()
	}
	if v.Info.Override != nil {
		d.Overridden = v.Info.Override.Fields
	}
	if reason, ok := scheduler.FilterNode(scheduler.PodNeeds{}, &v, now, h.policy); !ok {
		d.FilterReason = reason
	}
	writeJSON(w, http.StatusOK, d)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, s)
}
