package provider

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// The first fill of a fresh pod's Files volumes (its service account
// token, Secrets, ConfigMaps, downward API) is written on the host while
// the podman pod and its first container are created: GNU tar, over the
// node's SSH connection, extracts each volume's archive into the volume's
// directory, as kubelet writes them to its own disk before it starts a
// container. Through podman's archive API the copy has to wait for a
// created container that mounts the volume (fillThrough), on the pod's
// start path.
//
// Only into a directory learn found empty, of a pod whose podman pod was
// created just now: no container has had it, so nothing in it can redirect
// a write. What the host fails to write (a host without GNU tar, the
// connection cut) is left to fillThrough, with the same archive: the same
// names over whatever part of it the host wrote.

// volumeFill is a Files volume's first archive, and the volume as it will
// be once written.
type volumeFill struct {
	data []byte
	fv   *fileVolume
}

// hostFill is a first fill under way on the host.
type hostFill struct {
	fills map[string]volumeFill
	done  chan struct{}
	// failed is set before done closes, by volume.
	failed map[string]error
}

// fillOnHost starts writing, on the host, the plan's Files volumes that
// learn found empty and that the pod's containers mount whole (the others
// go through the loader, fillLoaded). Call it once the pod's podman pod was
// created anew; ctx bounds the writing.
func (pv *podVolumes) fillOnHost(ctx context.Context, plan *pod.Plan, log *slog.Logger) {
	if pv.fill != nil {
		return
	}
	f := &hostFill{fills: map[string]volumeFill{}, done: make(chan struct{}), failed: map[string]error{}}
	dirs := map[string]string{}
	for _, v := range plan.Volumes {
		mp := pv.mountpoints[v.K8sName]
		_, retry := pv.unfilled[v.K8sName] // fillThrough writes it
		if v.Kind != pod.VolumeFiles || mp == "" || retry || !pv.written[v.K8sName].empty() || !mountedWhole(plan, v.K8sName) {
			continue
		}
		data, fv, err := pv.firstFill(plan, v)
		if err != nil {
			continue // fillThrough meets it again, and reports it
		}
		f.fills[v.K8sName], dirs[v.K8sName] = volumeFill{data, fv}, mp
	}
	if len(f.fills) == 0 {
		return
	}
	pv.fill = f
	go func() {
		defer close(f.done)
		for name, fill := range f.fills {
			if err := pv.rt.ExtractTar(ctx, dirs[name], bytes.NewReader(fill.data)); err != nil {
				f.failed[name] = err
				log.Info("writing a volume on the host failed: it is copied through podman instead", "volume", name, "err", err)
			}
		}
	}()
}

// settleFill waits for the first fill under way on the host, if any, and
// takes what it wrote: its volumes are written, and the ones it failed
// are left, with their archives, in unfilled.
func (pv *podVolumes) settleFill() {
	f := pv.fill
	if f == nil {
		return
	}
	<-f.done
	pv.fill = nil
	for name, fill := range f.fills {
		if f.failed[name] != nil {
			if pv.unfilled == nil {
				pv.unfilled = map[string]volumeFill{}
			}
			pv.unfilled[name] = fill
			continue
		}
		pv.written[name] = fill.fv
	}
}
