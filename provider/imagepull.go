package provider

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// imagePuller makes a pod's images present on the host, each per its
// container's pull policy, as kubelet's image manager does: it remembers
// the images it pulled or found, and counts each container's consecutive
// failed pulls, from which the pull back-off grows.
type imagePuller struct {
	rt    podRuntime
	clock clock.PassiveClock
	event eventFunc
	log   *slog.Logger

	present  map[string]bool // images pulled or found
	failures map[string]int  // container -> consecutive failed pulls
	lost     map[string]bool // containers whose pull the host's loss broke
	// pulled is the time spent pulling, failed pulls too.
	pulled time.Duration
}

func newImagePuller(rt podRuntime, clk clock.PassiveClock, event eventFunc, log *slog.Logger) *imagePuller {
	return &imagePuller{rt: rt, clock: clk, event: event, log: log, present: map[string]bool{}, failures: map[string]int{}, lost: map[string]bool{}}
}

// imageError is why a container's image is not there: Reason is the
// container's waiting reason.
type imageError struct {
	Reason string
	Err    error
	// Failures counts the container's consecutive failed pulls; 0 when
	// no pull was tried (pull policy Never).
	Failures int
}

func (e *imageError) Error() string { return e.Err.Error() }
func (e *imageError) Unwrap() error { return e.Err }

// hostLostError is a pull broken by the loss of its host (the SSH
// connection cut, podman gone) rather than by the image or its registry:
// it is not counted against the image, and the pull starts over as soon
// as the host answers again.
type hostLostError struct {
	Image string
	Err   error
}

func (e *hostLostError) Error() string {
	return fmt.Sprintf("the build host stopped answering while pulling image %q: %v", e.Image, e.Err)
}
func (e *hostLostError) Unwrap() error { return e.Err }

// ensure makes c's image present per its pull policy; an *imageError when
// it is not. A failed pull is the host's failure (hostFailure is told).
func (ip *imagePuller) ensure(ctx context.Context, pd *corev1.Pod, c pod.Container, secrets []*corev1.Secret, hostFailure func()) error {
	if ip.present[c.Image] {
		delete(ip.failures, c.K8sName)
		return nil
	}
	present, err := ip.exists(ctx, c.Image)
	if err != nil {
		return err
	}
	switch {
	case c.PullPolicy == corev1.PullNever && !present:
		err := fmt.Errorf("container image %q is not present with pull policy of Never", c.Image)
		ip.event(pd, corev1.EventTypeWarning, "ErrImageNeverPull", err.Error())
		return &imageError{Reason: "ErrImageNeverPull", Err: err}
	case present && c.PullPolicy != corev1.PullAlways:
		ip.event(pd, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", c.Image))
	default:
		if ip.lost[c.K8sName] {
			delete(ip.lost, c.K8sName)
			ip.event(pd, corev1.EventTypeNormal, "HostBack", fmt.Sprintf("The build host answers again: the pull of image %q starts over", c.Image))
		}
		ip.event(pd, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
		start := ip.clock.Now()
		how, err := ip.rt.PullImage(ctx, c.Image, pullCredentials(c.Image, secrets), ip.log)
		took := ip.clock.Since(start)
		ip.pulled += took
		if err != nil {
			hostFailure()
			if ctx.Err() == nil && !hostAnswers(ctx, ip.rt) {
				ip.lost[c.K8sName] = true
				lost := &hostLostError{Image: c.Image, Err: err}
				ip.event(pd, corev1.EventTypeWarning, "WaitingForHost", lost.Error()+": the pull starts over once it is back")
				return lost
			}
			ip.failures[c.K8sName]++
			ip.event(pd, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %v", c.Image, err))
			return &imageError{Reason: "ErrImagePull", Err: err, Failures: ip.failures[c.K8sName]}
		}
		ip.event(pd, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s%s", c.Image, took.Round(time.Millisecond), how))
		ip.rt.RefreshImages(ctx)
	}
	ip.present[c.Image] = true
	delete(ip.failures, c.K8sName)
	return nil
}

// forget drops what ip knows of image: it may have left the host since it
// was listed (a create that failed), and the host's list is read again.
func (ip *imagePuller) forget(ctx context.Context, image string) {
	delete(ip.present, image)
	ip.rt.RefreshImages(ctx)
}

// exists tells whether ref is in the host's store. The host's image list
// (read with its facts, and after every pull) answers for a reference it
// names exactly, without a call; anything else, a short name say, is asked
// of podman, which resolves it as a pull would.
func (ip *imagePuller) exists(ctx context.Context, ref string) (bool, error) {
	if _, found := slices.BinarySearch(ip.rt.Images(), ref); found {
		return true, nil
	}
	return ip.rt.ImageExists(ctx, ref)
}
