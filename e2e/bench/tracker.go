package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"
)

// ---------------------------------------------------------------------------------------------
// Watching pods: the time each phase is first delivered by the apiserver.

type podTimes struct {
	created, scheduled, running, succeeded, failed time.Time
	node                                           string
	uid                                            types.UID
	last                                           *corev1.Pod
}

func (p *podTimes) done() bool { return !p.succeeded.IsZero() || !p.failed.IsZero() }

// podTracker records, for every pod matching a selector, when the watch
// delivered each phase (client-go RetryWatcher: a broken watch resumes from
// the last resource version, so no event is lost).
type podTracker struct {
	mu      sync.Mutex
	pods    map[string]*podTimes
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
}

type podWatcher struct {
	kube      kubernetes.Interface
	ns, label string
}

func (w podWatcher) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	o.LabelSelector = w.label
	return w.kube.CoreV1().Pods(w.ns).Watch(ctx, o)
}

func trackPods(ctx context.Context, kube kubernetes.Interface, ns, selector string) (*podTracker, error) {
	list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	rw, err := watchtools.NewRetryWatcherWithContext(wctx, list.ResourceVersion, podWatcher{kube, ns, selector})
	if err != nil {
		cancel()
		return nil, err
	}
	tr := &podTracker{pods: map[string]*podTimes{}, changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		defer rw.Stop()
		for ev := range rw.ResultChan() {
			now := time.Now()
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			tr.observe(p, now)
		}
	}()
	return tr, nil
}

func (tr *podTracker) observe(p *corev1.Pod, now time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	pt := tr.pods[p.Name]
	if pt == nil {
		pt = &podTimes{}
		tr.pods[p.Name] = pt
	}
	pt.uid, pt.last = p.UID, p
	if p.Spec.NodeName != "" && pt.scheduled.IsZero() {
		pt.scheduled, pt.node = now, p.Spec.NodeName
	}
	switch p.Status.Phase {
	case corev1.PodRunning:
		if pt.running.IsZero() {
			pt.running = now
		}
	case corev1.PodSucceeded:
		if pt.succeeded.IsZero() {
			pt.succeeded = now
		}
	case corev1.PodFailed:
		if pt.failed.IsZero() {
			pt.failed = now
		}
	}
	close(tr.changed)
	tr.changed = make(chan struct{})
}

func (tr *podTracker) setCreated(name string, t time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	pt := tr.pods[name]
	if pt == nil {
		pt = &podTimes{}
		tr.pods[name] = pt
	}
	pt.created = t
}

func (tr *podTracker) get(name string) podTimes {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if pt := tr.pods[name]; pt != nil {
		return *pt
	}
	return podTimes{}
}

func (tr *podTracker) snapshot() map[string]podTimes {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string]podTimes, len(tr.pods))
	for k, v := range tr.pods {
		out[k] = *v
	}
	return out
}

// wait returns once cond holds for the tracked pods, or fails after timeout
// saying what was awaited and what cond last reported.
func (tr *podTracker) wait(ctx context.Context, what string, timeout time.Duration, cond func(map[string]*podTimes) (bool, string)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		tr.mu.Lock()
		ok, state := cond(tr.pods)
		changed := tr.changed
		tr.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (tr *podTracker) stop() {
	tr.cancel()
	<-tr.done
}
