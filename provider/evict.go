package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// The kubelet's reason and messages for a pod evicted for its local
// storage (pkg/kubelet/eviction: localStorageEviction), trailing space
// included.
const (
	reasonEvicted         = "Evicted"
	emptyDirLimitMessage  = "Usage of EmptyDir volume %q exceeds the limit %q. "
	podLimitMessage       = "Pod ephemeral local storage usage exceeds the total limit of containers %s. "
	containerLimitMessage = "Container %s exceeded its local ephemeral storage limit %q. "
)

// storageCheckInterval is how often a running pod with local storage
// limits has its usage measured on the host (the kubelet's eviction manager
// looks every 10 s at figures its file system stats refresh about every
// minute).
const storageCheckInterval = 15 * time.Second

// storageLimits is what a pod's local storage is held to, as the kubelet's
// eviction manager holds it: each disk emptyDir to its sizeLimit, each
// container (its writable layer and log) to its limits.ephemeral-storage,
// and the pod (those together) to the sum of its containers' limits.
type storageLimits struct {
	emptyDirs  map[string]resource.Quantity // by volume
	containers map[string]resource.Quantity // by container
	// pod is the containers' limits summed, the largest init container's
	// when larger (resourcehelper.PodLimits); nil when none has one.
	pod *resource.Quantity
}

// podStorageLimits reads pd's local storage limits.
func podStorageLimits(pd *corev1.Pod) storageLimits {
	l := storageLimits{emptyDirs: map[string]resource.Quantity{}}
	for _, v := range pd.Spec.Volumes {
		if ed := v.EmptyDir; ed != nil && ed.Medium != corev1.StorageMediumMemory && ed.SizeLimit != nil && !ed.SizeLimit.IsZero() {
			l.emptyDirs[v.Name] = *ed.SizeLimit
		}
	}
	l.containers, l.pod = podEphemeralStorage(pd, func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Limits })
	return l
}

// podEphemeralStorage reads the containers' ephemeral-storage in the
// resource list that list picks (limits or requests), by container, and
// the pod's as resourcehelper.PodRequests/PodLimits add them: the app
// containers and sidecars summed, the largest init container's when
// larger; nil when no container has one.
func podEphemeralStorage(pd *corev1.Pod, list func(corev1.ResourceRequirements) corev1.ResourceList) (map[string]resource.Quantity, *resource.Quantity) {
	containers := map[string]resource.Quantity{}
	var apps, initMax resource.Quantity
	for _, c := range pd.Spec.Containers {
		if q, ok := list(c.Resources)[corev1.ResourceEphemeralStorage]; ok {
			containers[c.Name] = q
			apps.Add(q)
		}
	}
	for _, c := range pd.Spec.InitContainers {
		if q, ok := list(c.Resources)[corev1.ResourceEphemeralStorage]; ok {
			containers[c.Name] = q
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				apps.Add(q) // a sidecar runs beside the app containers
			} else if q.Cmp(initMax) > 0 {
				initMax = q
			}
		}
	}
	if len(containers) == 0 {
		return containers, nil
	}
	if initMax.Cmp(apps) > 0 {
		apps = initMax
	}
	return containers, &apps
}

// any says whether there is anything to measure.
func (l storageLimits) any() bool {
	return len(l.emptyDirs) > 0 || len(l.containers) > 0 || l.pod != nil
}

// storageUsage is a pod's local storage in use on the host, in bytes: each
// disk emptyDir's, each running container's (writable layer and log).
type storageUsage struct {
	emptyDirs  map[string]int64
	containers map[string]int64
}

// The kubelet's eviction signals (kubelet_evictions' eviction_signal):
// local storage limits, and the node's disk under pressure.
const (
	signalEmptyDirFsLimit           = "emptydirfs.limit"
	signalEphemeralPodFsLimit       = "ephemeralpodfs.limit"
	signalEphemeralContainerFsLimit = "ephemeralcontainerfs.limit"
	signalNodeFsAvailable           = "nodefs.available"
)

// exceeded says which limit usage is over, with the kubelet's message and
// eviction signal, in the kubelet's order: emptyDirs, the pod, the
// containers.
func (l storageLimits) exceeded(u storageUsage) (msg, signal string, over bool) {
	for _, name := range sortedKeys(l.emptyDirs) {
		if lim := l.emptyDirs[name]; u.emptyDirs[name] > lim.Value() {
			return fmt.Sprintf(emptyDirLimitMessage, name, lim.String()), signalEmptyDirFsLimit, true
		}
	}
	if l.pod != nil {
		var total int64
		for _, n := range u.emptyDirs {
			total += n
		}
		for _, n := range u.containers {
			total += n
		}
		if total > l.pod.Value() {
			return fmt.Sprintf(podLimitMessage, l.pod.String()), signalEphemeralPodFsLimit, true
		}
	}
	for _, name := range sortedKeys(l.containers) {
		if lim := l.containers[name]; u.containers[name] > lim.Value() {
			return fmt.Sprintf(containerLimitMessage, name, lim.String()), signalEphemeralContainerFsLimit, true
		}
	}
	return "", "", false
}

// storagePaths lists what to measure for limits: the disk emptyDirs'
// directories on the host by volume (all of them when the pod has a limit
// of its own, those with a sizeLimit otherwise), and the running
// containers' writable layers and log files by container.
func storagePaths(l storageLimits, all bool, plan *pod.Plan, mountpoints map[string]string, obs map[string]*observed) (vols map[string]string, ctrs map[string][]string) {
	all = all || l.pod != nil
	vols, ctrs = map[string]string{}, map[string][]string{}
	for _, v := range plan.Volumes {
		if v.Kind != pod.VolumeEmptyDir || v.Tmpfs || mountpoints[v.K8sName] == "" {
			continue
		}
		if _, ok := l.emptyDirs[v.K8sName]; ok || all {
			vols[v.K8sName] = mountpoints[v.K8sName]
		}
	}
	for name, o := range obs {
		_, ok := l.containers[name]
		if (!ok && !all) || o.current == nil || !o.current.Running {
			continue
		}
		for _, p := range []string{o.current.UpperDir, o.current.LogPath} {
			if p != "" {
				ctrs[name] = append(ctrs[name], p)
			}
		}
	}
	return vols, ctrs
}

// checkStorage measures the running pod's local storage when it has limits
// and a measurement is due, and evicts it, as the kubelet does, when one is
// exceeded: its containers are killed (no grace period) and it fails with
// reason Evicted. It returns whether the pod was evicted, and when the next
// measurement is due (0: none).
func (w *podWorker) checkStorage(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) (bool, time.Duration, error) {
	limits := podStorageLimits(pd)
	pressure := w.p.diskPressure.Load()
	if (!limits.any() && !pressure) || pod.Ended(pd.Status.Phase) || !anyRunning(obs) {
		// As the kubelet's eviction manager, only a pod with a container
		// running; one that starts kicks the worker.
		return false, 0, nil
	}
	now := w.p.cfg.Clock.Now()
	if now.Before(w.nextStorageCheck) {
		return false, w.nextStorageCheck.Sub(now), nil
	}
	w.nextStorageCheck = now.Add(storageCheckInterval)
	vols, ctrs := storagePaths(limits, pressure, w.plan, w.volumes.mountpoints, obs)
	var paths []string
	for _, p := range vols {
		paths = append(paths, p)
	}
	for _, ps := range ctrs {
		paths = append(paths, ps...)
	}
	if len(paths) == 0 {
		return false, storageCheckInterval, nil
	}
	slices.Sort(paths)
	sizes, err := w.p.rt.DiskUsage(ctx, slices.Compact(paths))
	if err != nil {
		// Not a reason to fail the pod: measured again at the next check.
		w.log.Info("measuring the pod's local storage", "err", err)
		return false, storageCheckInterval, nil
	}
	u := storageUsage{emptyDirs: map[string]int64{}, containers: map[string]int64{}}
	for name, p := range vols {
		u.emptyDirs[name] = sizes[p]
	}
	for name, ps := range ctrs {
		for _, p := range ps {
			u.containers[name] += sizes[p]
		}
	}
	w.diskUsage.Store(measuredUsage(pd, u, now))
	msg, signal, over := limits.exceeded(u)
	if !over {
		return false, storageCheckInterval, nil
	}
	w.p.countEviction(signal)
	w.log.Warn("evicting the pod for its local storage", "message", msg)
	return true, 0, w.stopAndFail(ctx, pd, reason{reasonEvicted, msg}, 0)
}

// measuredUsage is u as DiskPressure ranks pd by it, measured at.
func measuredUsage(pd *corev1.Pod, u storageUsage, at time.Time) *podDiskUsage {
	m := &podDiskUsage{uid: pd.UID, name: pd.Namespace + "/" + pd.Name, priority: ptr.Deref(pd.Spec.Priority, 0), at: at,
		containers: map[string]containerDiskUsage{}}
	for _, n := range u.emptyDirs {
		m.total += n
	}
	requests, total := podEphemeralStorage(pd, func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Requests })
	if total != nil {
		m.request = total.Value()
	}
	for name, n := range u.containers {
		m.total += n
		q := requests[name]
		m.containers[name] = containerDiskUsage{used: n, request: q.Value()}
	}
	return m
}

func anyRunning(obs map[string]*observed) bool {
	for _, o := range obs {
		if o.current != nil && o.current.Running {
			return true
		}
	}
	return false
}

// releaseEnded empties the emptyDirs of the pod once it has ended, as the
// kubelet tears an ended pod's volumes down: its containers and their logs
// stay until the pod is deleted, what they wrote in its emptyDirs does not
// hold the host's disk, or its memory for a Memory emptyDir, meanwhile. The
// outputs are uploaded before the pod ends. A Memory emptyDir's tmpfs,
// emptied, stays mounted by the infra container until the pod is deleted
// (an empty tmpfs holds no memory). Under disk pressure (reclaimNow), the
// containers and the podman pod go too, logs and tmpfs with them, as the
// kubelet removes a terminated pod's containers and sandbox then; the pod
// object stays with its final status. A failure is tried again after
// Retry.Sync.
func (w *podWorker) releaseEnded(ctx context.Context) syncResult {
	pd := w.current()
	if !pod.Ended(pd.Status.Phase) {
		return syncResult{}
	}
	w.stopServices() // nothing of the pod runs to use them
	if !w.released && w.plan != nil {
		if len(w.plan.ClusterServices) > 0 {
			// Without its relay the forwarder would only reset
			// connections, and kubelet leaves no process of an ended pod
			// running. podman does not restart a container it was told to
			// stop.
			if err := w.p.rt.StopContainer(ctx, pod.ForwarderName(w.uid()), 0); err != nil && !errors.Is(err, podman.ErrNotFound) {
				w.log.Info("stopping the ended pod's cluster Services forwarder", "err", err)
				return syncResult{next: w.p.cfg.Retry.Sync}
			}
		}
		var dirs []string
		for _, v := range w.plan.Volumes {
			if mp := w.volumes.mountpoints[v.K8sName]; v.Kind == pod.VolumeEmptyDir && mp != "" {
				dirs = append(dirs, mp)
			}
		}
		if err := w.p.rt.EmptyDirs(ctx, dirs); err != nil {
			w.log.Info("emptying the ended pod's emptyDirs", "err", err)
			return syncResult{next: w.p.cfg.Retry.Sync}
		}
		w.released = true
	}
	w.mu.Lock()
	reclaim := w.reclaimNow
	w.mu.Unlock()
	if reclaim && !w.reclaimed.Load() {
		if err := w.removeFromHost(ctx, pd); err != nil {
			w.log.Info("removing the ended pod's containers under disk pressure", "err", err)
			return syncResult{next: w.p.cfg.Retry.Sync}
		}
		w.log.Info("ended pod's containers removed under disk pressure")
		w.reclaimed.Store(true)
		w.ended = true // nothing of it runs, or is observed, again
	}
	return syncResult{}
}
