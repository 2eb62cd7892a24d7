package provider

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/tarstream"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// S3 transfers (annotation rbn.dev/transfers) relay objects between S3 and
// the pod's volumes through rbn-kubelet, which can reach S3 when build hosts
// cannot: S3 <-> s3relay <-> tar stream <-> podman's archive API on a
// never-started container that mounts the volumes, over the node's SSH
// connection. Nothing is written to rbn-kubelet's disk; the S3 credentials
// never leave rbn-kubelet.

// transferFailure is a transfer that failed for good: the pod fails with reason.
type transferFailure struct{ reason, msg string }

func (e *transferFailure) Error() string { return e.msg }

// progressInterval spaces the progress events of one transfer.
const progressInterval = 10 * time.Second

// withTransferContext runs fn with a context that terminate cancels, so that
// deleting the pod interrupts its transfer at once.
func (w *podWorker) withTransferContext(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.mu.Lock()
	if w.deleting != nil {
		w.mu.Unlock()
		return errors.New("pod is being deleted")
	}
	w.transferCancel = cancel
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.transferCancel = nil
		w.mu.Unlock()
	}()
	return fn(ctx)
}

// s3Client builds a client from the transfers' Secret.
func (w *podWorker) s3Client(pd *corev1.Pod, t *rbnv1.Transfers) (*s3relay.Client, error) {
	s, err := w.p.cfg.Secrets.Secrets(pd.Namespace).Get(t.SecretName)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", pd.Namespace, t.SecretName, err)
	}
	e, err := s3Endpoint(s)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", pd.Namespace, t.SecretName, err)
	}
	c, err := w.p.cfg.Relay.Client(e)
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", pd.Namespace, t.SecretName, err)
	}
	return c, nil
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

// volumeContainer creates a container that is never started (image: the
// pod's infra image, always present) and mounts the named Kubernetes
// volumes under loaderRoot, for podman's archive API to read and write
// them. remove deletes it.
func (w *podWorker) volumeContainer(ctx context.Context, role, image string, vols []pod.Volume) (name string, remove func(), err error) {
	pc := w.p.rt
	name = pod.PodName(w.uid()) + "-" + role
	spec := newVolumeContainerSpec(name, image, w.plan.Labels, role)
	for _, v := range vols {
		spec.Volumes = append(spec.Volumes, namedVolume(v))
	}
	_ = pc.RemoveContainer(ctx, name, true) // a leftover from an interrupted attempt
	if _, err := pc.CreateContainer(ctx, spec); err != nil {
		return "", nil, fmt.Errorf("volume %s container: %w", role, err)
	}
	return name, func() { _ = pc.RemoveContainer(context.WithoutCancel(ctx), name, true) }, nil
}

// transferVolumes returns the plan's volumes that the named Kubernetes volumes are.
func (w *podWorker) transferVolumes(names []string) []pod.Volume {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []pod.Volume
	for _, v := range w.plan.Volumes {
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
func (w *podWorker) inputsNeeded(ctx context.Context, fresh bool) (bool, error) {
	if w.plan.Transfers == nil || len(w.plan.Transfers.Inputs) == 0 {
		return false, nil
	}
	if fresh {
		return true, nil
	}
	list, err := w.p.rt.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(w.uid())})
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

// stageInputs fetches the pod's inputs into its volumes. A failure that
// another try cannot cure is a *transferFailure.
func (w *podWorker) stageInputs(ctx context.Context, image string) error {
	pd := w.current()
	t := w.plan.Transfers
	fail := func(msg string) error {
		return &transferFailure{reason: pod.ReasonInputTransferFailed, msg: msg}
	}
	client, err := w.s3Client(pd, t)
	if err != nil {
		return fail(err.Error())
	}
	defer client.Close()
	var names []string
	for _, in := range t.Inputs {
		names = append(names, in.Volume)
	}
	ctr, remove, err := w.volumeContainer(ctx, "transfer", image, w.transferVolumes(names))
	if err != nil {
		return err
	}
	defer remove()
	for _, in := range t.Inputs {
		obj := "s3://" + in.Bucket + "/" + in.Key
		where := fmt.Sprintf("volume %s at %s", in.Volume, in.Path)
		w.p.event(pd, corev1.EventTypeNormal, "Downloading", fmt.Sprintf("Downloading %s into %s (%s)", obj, where, in.Unpack))
		start := w.p.cfg.Clock.Now()
		res, err := client.Download(ctx, in.Bucket, in.Key, w.inputSink(ctr, in), w.progress(pd, obj, start))
		if err != nil {
			if ctx.Err() != nil {
				return err // interrupted (deletion, shutdown): not the pod's failure
			}
			return fail(fmt.Sprintf("%v (after %d attempt(s))", err, res.Attempts))
		}
		w.p.event(pd, corev1.EventTypeNormal, "Downloaded", fmt.Sprintf("Downloaded %s into %s: %s, %s, in %s",
			obj, where, humanBytes(res.Bytes), res.Checksum, w.p.cfg.Clock.Since(start).Round(time.Millisecond)))
	}
	return nil
}

var errCopyEnded = errors.New("copy into the volume ended")

// inputSink streams an object into the volume as a tar stream: the object
// as one file, or the entries of the archive it is moved under in.Path.
func (w *podWorker) inputSink(ctr string, in rbnv1.TransferInput) s3relay.Sink {
	return func(ctx context.Context, body io.Reader, size int64) error {
		now := w.p.cfg.Clock.Now()
		pr, pw := io.Pipe()
		produced := make(chan error, 1)
		go func() {
			var err error
			switch in.Unpack {
			case rbnv1.FormatTar:
				err = tarstream.Reroot(pw, body, in.Path, now)
			case rbnv1.FormatTarGz:
				var zr *gzip.Reader
				if zr, err = gzip.NewReader(body); err == nil {
					if err = tarstream.Reroot(pw, zr, in.Path, now); err == nil {
						_, err = io.Copy(io.Discard, zr) // to the gzip trailer, whose CRC it checks
					}
				}
			default:
				err = tarstream.WrapFile(pw, in.Path, body, size, now)
			}
			pw.CloseWithError(err)
			produced <- err
		}()
		cerr := w.p.rt.CopyInto(ctx, ctr, path.Join(loaderRoot, in.Volume), pr)
		pr.CloseWithError(errCopyEnded)
		perr := <-produced
		switch {
		case perr != nil && !errors.Is(perr, errCopyEnded) && in.Unpack != rbnv1.FormatFile:
			// The body's own failures are told apart by the relay; this is the content.
			return s3relay.Permanent(fmt.Errorf("unpack %s: %w", in.Unpack, perr))
		case perr != nil && !errors.Is(perr, errCopyEnded):
			return perr
		}
		return cerr
	}
}

// uploadOutputs uploads the pod's outputs. A failure that another try
// cannot cure is a *transferFailure.
func (w *podWorker) uploadOutputs(ctx context.Context) error {
	pd := w.current()
	t := w.plan.Transfers
	fail := func(msg string) error {
		return &transferFailure{reason: pod.ReasonOutputTransferFailed, msg: msg}
	}
	client, err := w.s3Client(pd, t)
	if err != nil {
		return fail(err.Error())
	}
	defer client.Close()
	image, err := w.infraImage(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, out := range t.Outputs {
		names = append(names, out.Volume)
	}
	ctr, remove, err := w.volumeContainer(ctx, "transfer", image, w.transferVolumes(names))
	if err != nil {
		return err
	}
	defer remove()
	for _, out := range t.Outputs {
		obj := "s3://" + out.Bucket + "/" + out.Key
		what := fmt.Sprintf("%s of volume %s", out.Path, out.Volume)
		w.p.event(pd, corev1.EventTypeNormal, "Uploading", fmt.Sprintf("Uploading %s to %s (%s)", what, obj, out.Format))
		start := w.p.cfg.Clock.Now()
		res, err := client.Upload(ctx, out.Bucket, out.Key, w.outputSource(ctr, out), w.progress(pd, obj, start))
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return fail(fmt.Sprintf("%v (after %d attempt(s)); no object was written", err, res.Attempts))
		}
		d := w.p.cfg.Clock.Since(start)
		w.p.event(pd, corev1.EventTypeNormal, "Uploaded", fmt.Sprintf("Uploaded %s to %s: %s, %s, in %s (%s/s)",
			what, obj, humanBytes(res.Bytes), res.Checksum, d.Round(time.Millisecond), humanBytes(int64(float64(res.Bytes)/max(d.Seconds(), 0.001)))))
	}
	return nil
}

// outputSource streams a file as it is, or a path's content as a tar stream.
func (w *podWorker) outputSource(ctr string, out rbnv1.TransferOutput) s3relay.Source {
	return func(ctx context.Context) (io.ReadCloser, error) {
		ar, err := w.p.rt.CopyFrom(ctx, ctr, path.Join(loaderRoot, out.Volume, out.Path))
		if errors.Is(err, podman.ErrNotFound) {
			return nil, s3relay.Permanent(fmt.Errorf("%s not found in volume %s", out.Path, out.Volume))
		}
		if err != nil {
			return nil, err
		}
		if out.Format == rbnv1.FormatFile {
			r, _, err := tarstream.SingleFile(ar)
			if errors.Is(err, tarstream.ErrNotRegular) {
				ar.Close()
				return nil, s3relay.Permanent(fmt.Errorf("%w (upload a directory with format tar or tar.gz)", err))
			}
			if err != nil {
				ar.Close()
				return nil, err
			}
			return readCloser{Reader: r, Closer: ar}, nil
		}
		pr, pw := io.Pipe()
		go func() {
			var err error
			if out.Format == rbnv1.FormatTarGz {
				zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
				if err = tarstream.Contents(zw, ar); err == nil {
					err = zw.Close()
				}
			} else {
				err = tarstream.Contents(pw, ar)
			}
			ar.Close()
			pw.CloseWithError(err)
		}()
		return pr, nil
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// infraImage is the image of the pod's infra container.
func (w *podWorker) infraImage(ctx context.Context) (string, error) {
	pc := w.p.rt
	info, err := pc.InspectPod(ctx, w.plan.PodName)
	if err != nil {
		return "", err
	}
	infra, err := pc.InspectContainer(ctx, info.InfraID)
	if err != nil {
		return "", err
	}
	return infra.ImageID, nil
}

// progress reports a transfer's progress as an event every progressInterval.
func (w *podWorker) progress(pd *corev1.Pod, obj string, start time.Time) s3relay.Progress {
	var mu sync.Mutex
	last := start
	return func(n int64) {
		now := w.p.cfg.Clock.Now()
		mu.Lock()
		due := now.Sub(last) >= progressInterval
		if due {
			last = now
		}
		mu.Unlock()
		if due {
			rate := float64(n) / max(now.Sub(start).Seconds(), 0.001)
			w.p.event(pd, corev1.EventTypeNormal, "TransferProgress", fmt.Sprintf("%s: %s so far (%s/s)", obj, humanBytes(n), humanBytes(int64(rate))))
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
