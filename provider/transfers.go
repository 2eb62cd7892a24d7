package provider

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// S3 transfers (annotation rbn.dev/transfers) relay objects between S3 and
// the pod's volumes through rbn-kubelet, which can reach S3 when build hosts
// cannot: S3 <-> s3relay <-> tar stream <-> podman's archive API on a
// never-started container that mounts the volumes, over the node's SSH
// connection. Nothing is written to rbn-kubelet's disk; the S3 credentials
// never leave rbn-kubelet.

// progressInterval spaces the progress events of one transfer.
const progressInterval = 10 * time.Second

// podTransfers is a pod's S3 transfers: its inputs, staged into its
// volumes before its first container, and its outputs, uploaded once every
// container succeeded. Deleting the pod interrupts the one under way.
type podTransfers struct {
	rt     podRuntime
	clock  clock.PassiveClock
	event  eventFunc
	secret SecretFunc
	relay  *s3relay.Relay
	uid    types.UID

	mu        sync.Mutex
	cancel    context.CancelFunc // interrupts the transfer under way, if any
	cancelled bool               // the pod is going: no transfer starts any more

	// Outputs: awaited once every container succeeded, done once
	// uploaded, or failed for good.
	awaiting bool
	done     bool
	failure  *reason
}

func newPodTransfers(rt podRuntime, clk clock.PassiveClock, event eventFunc, secret SecretFunc, relay *s3relay.Relay, uid types.UID) *podTransfers {
	return &podTransfers{rt: rt, clock: clk, event: event, secret: secret, relay: relay, uid: uid}
}

// errTransfersCancelled: the pod is being deleted.
var errTransfersCancelled = errors.New("pod is being deleted")

// interrupt cancels the transfer under way, and any later one.
func (t *podTransfers) interrupt() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cancelled = true
	if t.cancel != nil {
		t.cancel()
	}
}

// interruptible runs fn with a context that interrupt cancels.
func (t *podTransfers) interruptible(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.mu.Lock()
	if t.cancelled {
		t.mu.Unlock()
		return errTransfersCancelled
	}
	t.cancel = cancel
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.cancel = nil
		t.mu.Unlock()
	}()
	return fn(ctx)
}

// outputs is where the pod's outputs are, for its status.
func (t *podTransfers) outputs(plan *pod.Plan) outputsState {
	return outputsState{
		Planned: plan != nil && plan.Transfers != nil && len(plan.Transfers.Outputs) > 0,
		Done:    t.done, Failure: t.failure,
	}
}

// outputsDue reports whether the outputs are awaited and not uploaded, nor failed for good.
func (t *podTransfers) outputsDue() bool { return t.awaiting && !t.done && t.failure == nil }

// s3Client builds a client from the transfers' Secret, read as the pod's
// service account at each transfer.
func (t *podTransfers) s3Client(ctx context.Context, pd *corev1.Pod, tr *rbnv1.Transfers) (*s3relay.Client, error) {
	s, err := t.secret(ctx, pd, tr.SecretName)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", pd.Namespace, tr.SecretName, err)
	}
	e, err := s3Endpoint(s)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", pd.Namespace, tr.SecretName, err)
	}
	c, err := t.relay.Client(e)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", pd.Namespace, tr.SecretName, err)
	}
	return c.WithHostWait(func(ctx context.Context) (bool, error) { return t.waitHost(ctx, pd) }), nil
}

// hostWaitTimeout bounds a transfer's wait for its build host after the
// host was lost in the middle of it (the SSH connection cut, podman
// restarted).
const hostWaitTimeout = 5 * time.Minute

// waitHost is the transfers' s3relay.HostWait: after a failed attempt, it
// asks whether the host answers (hostAnswers); if not, the host is gone (the
// attempt broke because of it, not because of S3 or the data), and it
// waits, on the host's health changes, until podman answers again, at most
// hostWaitTimeout. waited tells that the host was gone.
func (t *podTransfers) waitHost(ctx context.Context, pd *corev1.Pod) (waited bool, err error) {
	if hostAnswers(ctx, t.rt) {
		return false, nil
	}
	t.event(pd, corev1.EventTypeWarning, "WaitingForHost", fmt.Sprintf(
		"The build host stopped answering during a transfer: waiting up to %s for it, then the transfer starts over", hostWaitTimeout))
	wctx, cancel := context.WithTimeout(ctx, hostWaitTimeout)
	defer cancel()
	for {
		changed := t.rt.Changed()
		if hostAnswers(wctx, t.rt) {
			t.event(pd, corev1.EventTypeNormal, "HostBack", "The build host answers again: the transfer starts over")
			return true, nil
		}
		select {
		case <-changed:
		case <-wctx.Done():
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			return true, fmt.Errorf("the build host did not answer again within %s", hostWaitTimeout)
		}
	}
}

// s3Endpoint reads an S3 endpoint and its credentials from a Secret (keys rbnv1.S3Key*).
func s3Endpoint(s *corev1.Secret) (s3relay.Endpoint, error) {
	get := func(k string) string {
		if v, ok := s.Data[k]; ok {
			return string(v)
		}
		return s.StringData[k]
	}
	e := s3relay.Endpoint{
		URL: get(rbnv1.S3KeyEndpoint), Region: get(rbnv1.S3KeyRegion),
		AccessKeyID: get(rbnv1.S3KeyAccessKeyID), SecretAccessKey: get(rbnv1.S3KeySecretAccessKey),
		SessionToken: get(rbnv1.S3KeySessionToken), CABundle: []byte(get(rbnv1.S3KeyCABundle)),
	}
	if e.Region == "" {
		e.Region = "us-east-1"
	}
	e.PathStyle = e.URL != ""
	if v := get(rbnv1.S3KeyForcePathStyle); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return e, fmt.Errorf("key %s: %q is not a boolean", rbnv1.S3KeyForcePathStyle, v)
		}
		e.PathStyle = b
	}
	return e, e.Validate()
}

// transferVolumes returns the plan's volumes that the named Kubernetes volumes are.
func transferVolumes(plan *pod.Plan, names []string) []pod.Volume {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []pod.Volume
	for _, v := range plan.Volumes {
		if want[v.K8sName] {
			out = append(out, v)
		}
	}
	return out
}

// inputsNeeded reports whether the pod's inputs still have to be staged:
// they come before its first container, so once any container exists (this
// worker or a previous rbn-kubelet created it) they were. A fresh podman
// pod has none.
func (t *podTransfers) inputsNeeded(ctx context.Context, plan *pod.Plan, fresh bool) (bool, error) {
	if plan.Transfers == nil || len(plan.Transfers.Inputs) == 0 {
		return false, nil
	}
	if fresh {
		return true, nil
	}
	list, err := t.rt.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(t.uid)})
	if err != nil {
		return false, err
	}
	for _, c := range list {
		if c.Labels[pod.LabelContainer] != "" {
			return false, nil
		}
	}
	return true, nil
}

// stage fetches the pod's inputs into its volumes, interruptibly. A
// failure that another try cannot cure is a *podFailure.
func (t *podTransfers) stage(ctx context.Context, pd *corev1.Pod, plan *pod.Plan, image string) error {
	return t.interruptible(ctx, func(ctx context.Context) error { return t.stageInputs(ctx, pd, plan, image) })
}

func (t *podTransfers) stageInputs(ctx context.Context, pd *corev1.Pod, plan *pod.Plan, image string) error {
	tr := plan.Transfers
	fail := func(msg string) error {
		return &podFailure{reason: pod.ReasonInputTransferFailed, msg: msg}
	}
	client, err := t.s3Client(ctx, pd, tr)
	if err != nil {
		return fail(err.Error())
	}
	defer client.Close()
	var names []string
	for _, in := range tr.Inputs {
		names = append(names, in.Volume)
	}
	ctr, remove, err := volumeContainer(ctx, t.rt, t.uid, plan, "transfer", image, transferVolumes(plan, names))
	if err != nil {
		return err
	}
	defer remove()
	for _, in := range tr.Inputs {
		obj := "s3://" + in.Bucket + "/" + in.Key
		where := fmt.Sprintf("volume %s at %s", in.Volume, in.Path)
		t.event(pd, corev1.EventTypeNormal, "Downloading", fmt.Sprintf("Downloading %s into %s (%s)", obj, where, in.Unpack))
		start := t.clock.Now()
		res, err := client.Download(ctx, in.Bucket, in.Key, t.inputSink(ctr, in, t.inputLimits(plan, in.Volume)), t.progress(pd, obj, start))
		if err != nil {
			if ctx.Err() != nil {
				return err // interrupted (deletion, shutdown): not the pod's failure
			}
			return fail(fmt.Sprintf("%v (after %d attempt(s))", err, res.Attempts))
		}
		t.event(pd, corev1.EventTypeNormal, "Downloaded", fmt.Sprintf("Downloaded %s into %s: %s, %s, in %s",
			obj, where, humanBytes(res.Bytes), res.Checksum, t.clock.Since(start).Round(time.Millisecond)))
	}
	return nil
}

// upload uploads the pod's outputs, interruptibly, and records how it went:
// done, or failed for good (a Warning event tells why). An error is an
// upload interrupted, to try again.
func (t *podTransfers) upload(ctx context.Context, pd *corev1.Pod, plan *pod.Plan) error {
	err := t.interruptible(ctx, func(ctx context.Context) error { return t.uploadOutputs(ctx, pd, plan) })
	var failed *podFailure
	switch {
	case errors.As(err, &failed):
		t.failure = &reason{Reason: failed.reason, Message: failed.msg}
		t.event(pd, corev1.EventTypeWarning, failed.reason, failed.msg)
		return nil
	case err != nil:
		return err
	}
	t.done = true
	return nil
}

func (t *podTransfers) uploadOutputs(ctx context.Context, pd *corev1.Pod, plan *pod.Plan) error {
	tr := plan.Transfers
	fail := func(msg string) error {
		return &podFailure{reason: pod.ReasonOutputTransferFailed, msg: msg}
	}
	client, err := t.s3Client(ctx, pd, tr)
	if err != nil {
		return fail(err.Error())
	}
	defer client.Close()
	image, err := infraImage(ctx, t.rt, plan)
	if err != nil {
		return err
	}
	var names []string
	for _, out := range tr.Outputs {
		names = append(names, out.Volume)
	}
	ctr, remove, err := volumeContainer(ctx, t.rt, t.uid, plan, "transfer", image, transferVolumes(plan, names))
	if err != nil {
		return err
	}
	defer remove()
	for _, out := range tr.Outputs {
		obj := "s3://" + out.Bucket + "/" + out.Key
		what := fmt.Sprintf("%s of volume %s", out.Path, out.Volume)
		// The pod owns its output keys: an incomplete upload of one is what an
		// earlier attempt left when its process was killed mid-way (a
		// replica's takeover of the node). Not being allowed to list them
		// must not stop the upload.
		if n, err := client.AbortIncomplete(ctx, out.Bucket, out.Key); err != nil {
			logging.FromContext(ctx).Warn("could not remove earlier incomplete uploads of an output", "object", obj, "err", err)
		} else if n > 0 {
			t.event(pd, corev1.EventTypeNormal, "AbortedIncompleteUpload", fmt.Sprintf("Aborted %d incomplete upload(s) of %s left by an earlier attempt", n, obj))
		}
		t.event(pd, corev1.EventTypeNormal, "Uploading", fmt.Sprintf("Uploading %s to %s (%s)", what, obj, out.Format))
		start := t.clock.Now()
		res, err := client.Upload(ctx, out.Bucket, out.Key, t.outputSource(ctr, out), t.progress(pd, obj, start))
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fail(fmt.Sprintf("%v (after %d attempt(s)); no object was written", err, res.Attempts))
		}
		d := t.clock.Since(start)
		t.event(pd, corev1.EventTypeNormal, "Uploaded", fmt.Sprintf("Uploaded %s to %s: %s, %s, in %s (%s/s)",
			what, obj, humanBytes(res.Bytes), res.Checksum, d.Round(time.Millisecond), humanBytes(int64(float64(res.Bytes)/max(d.Seconds(), 0.001)))))
	}
	return nil
}

// infraImage is the image of the pod's infra container.
func infraImage(ctx context.Context, rt podRuntime, plan *pod.Plan) (string, error) {
	info, err := rt.InspectPod(ctx, plan.PodName)
	if err != nil {
		return "", err
	}
	infra, err := rt.InspectContainer(ctx, info.InfraID)
	if err != nil {
		return "", err
	}
	return infra.ImageID, nil
}

// progress reports a transfer's progress as an event every progressInterval.
func (t *podTransfers) progress(pd *corev1.Pod, obj string, start time.Time) s3relay.Progress {
	var mu sync.Mutex
	last := start
	return func(n int64) {
		now := t.clock.Now()
		mu.Lock()
		due := now.Sub(last) >= progressInterval
		if due {
			last = now
		}
		mu.Unlock()
		if due {
			rate := float64(n) / max(now.Sub(start).Seconds(), 0.001)
			t.event(pd, corev1.EventTypeNormal, "TransferProgress", fmt.Sprintf("%s: %s so far (%s/s)", obj, humanBytes(n), humanBytes(int64(rate))))
		}
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
