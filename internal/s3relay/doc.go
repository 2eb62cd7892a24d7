// Package s3relay moves objects between S3 and streams, for rbn-kubelet to
// relay data between object storage and build hosts that cannot reach it.
//
// Nothing touches the local disk and memory stays bounded whatever the
// object size: downloads stream the response body straight to the caller's
// sink; uploads read the source into part buffers taken from one pool that
// a Relay shares among all its transfers (MaxBuffers x PartSize bytes at
// most), and send them as a multipart upload that is completed only at the
// end, so an object appears whole or not at all. It knows nothing of podman
// or Kubernetes.
package s3relay
