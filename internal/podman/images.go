package podman

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/containers/podman/v5/pkg/bindings/images"
)

// Credentials authenticate a pull.
type Credentials struct {
	Username string
	Password string
}

// ImageExists reports whether ref is in the host's store.
func (c *Client) ImageExists(ctx context.Context, ref string) (_ bool, err error) {
	cctx, end, err := c.call(ctx, opImageExists)
	if err != nil {
		return false, err
	}
	defer end(&err)
	ok, err := images.Exists(cctx, ref, nil)
	return ok, wrap("image exists "+ref, err)
}

// ImageID returns the ID of ref in the host's store.
func (c *Client) ImageID(ctx context.Context, ref string) (_ string, err error) {
	cctx, end, err := c.call(ctx, opImageInspect)
	if err != nil {
		return "", err
	}
	defer end(&err)
	r, err := images.GetImage(cctx, ref, nil)
	if err != nil {
		return "", wrap("inspect image "+ref, err)
	}
	return r.ID, nil
}

// PullImage pulls ref onto the host (always contacting the registry) and returns its ID.
func (c *Client) PullImage(ctx context.Context, ref string, creds *Credentials) (string, error) {
	return c.pull(ctx, ref, new(images.PullOptions), creds)
}

// PullImageLoopbackPlain pulls ref from a registry on the host's own
// loopback that speaks plain HTTP (rbn-kubelet's image relay, forwarded over
// SSH): TLS is off for this pull only, podman retries nothing (the relay has
// already reached the registry: a failure here is final), and username and
// password are the relay's own for this pull (never a registry's). They
// travel as any pull's credentials, in the API request's X-Registry-Auth
// header, which podman neither stores nor logs. Layers already in the
// host's store are not fetched.
func (c *Client) PullImageLoopbackPlain(ctx context.Context, ref, username, password string) (string, error) {
	return c.pull(ctx, ref, new(images.PullOptions).WithSkipTLSVerify(true).WithRetry(0), &Credentials{Username: username, Password: password})
}

func (c *Client) pull(ctx context.Context, ref string, opts *images.PullOptions, creds *Credentials) (_ string, err error) {
	cctx, end, err := c.call(ctx, opImagePull)
	if err != nil {
		return "", err
	}
	defer end(&err)
	opts = opts.WithPolicy("always").WithQuiet(true).WithProgressWriter(io.Discard)
	if creds != nil {
		opts = opts.WithUsername(creds.Username).WithPassword(creds.Password)
	}
	ids, err := images.Pull(cctx, ref, opts)
	if err != nil {
		return "", wrap("pull "+ref, err)
	}
	if len(ids) == 0 {
		return "", wrap("pull "+ref, errNoImage)
	}
	return ids[0], nil
}

// TagImage adds the name repo:tag to the image nameOrID.
func (c *Client) TagImage(ctx context.Context, nameOrID, repo, tag string) (err error) {
	cctx, end, err := c.call(ctx, opImageTag)
	if err != nil {
		return err
	}
	defer end(&err)
	return wrap("tag "+nameOrID+" as "+repo+":"+tag, images.Tag(cctx, nameOrID, tag, repo, nil))
}

// UntagImage removes the name repo:tag from the image nameOrID; the image stays.
func (c *Client) UntagImage(ctx context.Context, nameOrID, repo, tag string) (err error) {
	cctx, end, err := c.call(ctx, opImageUntag)
	if err != nil {
		return err
	}
	defer end(&err)
	return wrap("untag "+repo+":"+tag+" from "+nameOrID, images.Untag(cctx, nameOrID, tag, repo, nil))
}

// ImageSummary is an image of the host's store as listed.
type ImageSummary struct {
	ID string
	// Names are its references: repo:tag and repo@digest.
	Names []string
	// Size is the image's size, its layers shared with others included.
	Size int64
}

// ListImageSummaries lists the images of the host's store.
func (c *Client) ListImageSummaries(ctx context.Context) (_ []ImageSummary, err error) {
	cctx, end, err := c.call(ctx, opImageList)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	list, err := images.List(cctx, nil)
	if err != nil {
		return nil, wrap("list images", err)
	}
	out := make([]ImageSummary, 0, len(list))
	for _, im := range list {
		s := ImageSummary{ID: im.ID, Size: im.Size}
		for _, r := range append(append([]string(nil), im.RepoTags...), im.RepoDigests...) {
			if r != "" && r != "<none>:<none>" && !slices.Contains(s.Names, r) {
				s.Names = append(s.Names, r)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// ListImages returns the references (repo:tag and repo@digest) of every
// image in the host's store, sorted.
func (c *Client) ListImages(ctx context.Context) ([]string, error) {
	list, err := c.ListImageSummaries(ctx)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, im := range list {
		refs = append(refs, im.Names...)
	}
	slices.Sort(refs)
	return slices.Compact(refs), nil
}

// RemoveImage removes the image id and every name it has. It fails, and
// removes nothing, while a container was made from it.
func (c *Client) RemoveImage(ctx context.Context, id string) (err error) {
	cctx, end, err := c.call(ctx, opImageRemove)
	if err != nil {
		return err
	}
	defer end(&err)
	_, errs := images.Remove(cctx, []string{id}, nil)
	return wrap("remove image "+id, errors.Join(errs...))
}
