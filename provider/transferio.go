package provider

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/tarstream"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// The streams between S3 and a pod's volumes: an object goes into a volume
// as a tar stream through podman's archive API (inputSink), and a volume's
// file or directory comes out of it the same way (outputSource).

var errCopyEnded = errors.New("copy into the volume ended")

// inputSink streams an object into the volume as a tar stream: the object
// as one file, or the entries of the archive it is moved under in.Path.
// lim bounds what it may put into the volume (see unpackLimits).
func (t *podTransfers) inputSink(ctr string, in rbnv1.TransferInput, lim unpackLimits) s3relay.Sink {
	return func(ctx context.Context, body io.Reader, size int64) error {
		if in.Unpack == rbnv1.FormatFile && lim.MaxBytes > 0 && size > lim.MaxBytes {
			return s3relay.Permanent(fmt.Errorf("%w: the object's %d bytes exceed %s", tarstream.ErrTooLarge, size, lim))
		}
		now := t.clock.Now()
		pr, pw := io.Pipe()
		produced := make(chan error, 1)
		go func() {
			var err error
			switch in.Unpack {
			case rbnv1.FormatTar:
				err = tarstream.Reroot(pw, body, in.Path, now, lim.Limits)
			case rbnv1.FormatTarGz:
				var zr *gzip.Reader
				if zr, err = gzip.NewReader(body); err == nil {
					if err = tarstream.Reroot(pw, zr, in.Path, now, lim.Limits); err == nil {
						_, err = io.Copy(io.Discard, zr) // to the gzip trailer, whose CRC it checks
					}
				}
			default:
				err = tarstream.WrapFile(pw, in.Path, body, size, now)
			}
			pw.CloseWithError(err)
			produced <- err
		}()
		cerr := t.rt.CopyInto(ctx, ctr, path.Join(loaderRoot, in.Volume), pr)
		pr.CloseWithError(errCopyEnded)
		perr := <-produced
		switch {
		case errors.Is(perr, tarstream.ErrTooLarge):
			return s3relay.Permanent(fmt.Errorf("unpack %s: %w (%s)", in.Unpack, perr, lim))
		case perr != nil && !errors.Is(perr, errCopyEnded) && in.Unpack != rbnv1.FormatFile:
			// The body's own failures are told apart by the relay; this is the content.
			return s3relay.Permanent(fmt.Errorf("unpack %s: %w", in.Unpack, perr))
		case perr != nil && !errors.Is(perr, errCopyEnded):
			return perr
		}
		return cerr
	}
}

// maxUnpackEntries bounds the entries of one input archive: a million
// empty files would exhaust the volume's inodes long before its bytes.
const maxUnpackEntries = 1 << 20

// unpackLimits are an input's bounds and where its byte bound comes from.
type unpackLimits struct {
	tarstream.Limits
	source string
}

func (l unpackLimits) String() string {
	if l.MaxBytes == 0 {
		return fmt.Sprintf("limit: %d entries", l.MaxEntries)
	}
	return fmt.Sprintf("limit: %d bytes, %s; %d entries", l.MaxBytes, l.source, l.MaxEntries)
}

// inputLimits bounds what an input may put into volume: the volume's
// emptyDir sizeLimit, and for an emptyDir on disk (a podman named volume,
// in the host's podman store) the store's free space as the host last reported
// it, whichever is smaller; a hostPath or unsized volume of an unknown
// store gets the entry bound only.
func (t *podTransfers) inputLimits(plan *pod.Plan, volume string) unpackLimits {
	lim := unpackLimits{Limits: tarstream.Limits{MaxEntries: maxUnpackEntries}}
	for _, v := range plan.Volumes {
		if v.K8sName != volume || v.Kind != pod.VolumeEmptyDir {
			continue
		}
		if v.SizeLimitBytes > 0 {
			lim.MaxBytes, lim.source = v.SizeLimitBytes, "the volume's sizeLimit"
		}
		if info := t.rt.Info(); !v.Tmpfs && info != nil && info.StorageAvailable > 0 {
			if free := int64(info.StorageAvailable); lim.MaxBytes == 0 || free < lim.MaxBytes {
				lim.MaxBytes, lim.source = free, "the free space of the host's podman store"
			}
		}
	}
	return lim
}

// outputSource streams a file as it is, or a path's content as a tar stream.
func (t *podTransfers) outputSource(ctr string, out rbnv1.TransferOutput) s3relay.Source {
	return func(ctx context.Context) (io.ReadCloser, error) {
		ar, err := t.rt.CopyFrom(ctx, ctr, path.Join(loaderRoot, out.Volume, out.Path))
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
