package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// maxRedirects is where Go's and kubelet's redirect checkers give up.
const maxRedirects = 10

// runHTTP GETs the probe's URL through t and judges the status code as
// kubelet does: 2xx is a success, a 3xx kubelet did not follow (one to
// another host) a warning, anything else or no response a failure.
func runHTTP(ctx context.Context, t Target, podIP string, container *corev1.Container, a *corev1.HTTPGetAction, timeout time.Duration) (outcome, string, error) {
	req, err := NewHTTPRequest(ctx, a, container, podIP, userAgent)
	if err != nil {
		return outcomeUnknown, "", err
	}
	transport := NewHTTPTransport(t)
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: timeout, Transport: transport, CheckRedirect: sameHostRedirects}
	res, err := client.Do(req)
	if errors.Is(err, ErrTransport) {
		return outcomeUnknown, "", err
	}
	if err != nil {
		// No response, a timeout included, is a failure worded by Go.
		return outcomeFailure, err.Error(), nil
	}
	defer func() { _ = res.Body.Close() }()
	// Kubelet stops reading after 10 KiB: the status decides, the body is
	// only shown.
	b, err := io.ReadAll(io.LimitReader(res.Body, maxOutput))
	if err != nil {
		return outcomeFailure, "", err
	}
	body := string(b)
	switch {
	case res.StatusCode >= http.StatusOK && res.StatusCode < http.StatusMultipleChoices:
		return outcomeSuccess, body, nil
	case res.StatusCode >= http.StatusMultipleChoices && res.StatusCode < http.StatusBadRequest:
		return outcomeWarning, fmt.Sprintf("Probe terminated redirects, Response body: %v", body), nil
	default:
		// Kubelet keeps the body out of a failure's event (kubernetes#99425).
		return outcomeFailure, fmt.Sprintf("HTTP probe failed with statuscode: %d", res.StatusCode), nil
	}
}

// NewHTTPTransport is the transport of kubelet's httpGet probes and hooks,
// its connections made by t from the build host.
func NewHTTPTransport(t Target) *http.Transport {
	return &http.Transport{
		// Probes reach the pod network from the build host, never through
		// a proxy from this process's environment.
		Proxy:       nil,
		DialContext: t.Dial,
		// Kubelet probes HTTPS endpoints without verifying them: a pod's
		// serving certificate is rarely issued for its IP.
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as kubelet
		DisableKeepAlives:  true,
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
	}
}

// NewHTTPRequest builds the GET kubelet sends for a (a probe's, or a
// lifecycle hook's with its own agent): host defaulting to the pod IP, the
// port resolved by name, the path parsed as kubelet parses it, its headers
// with kubelet's User-Agent and Accept defaults, and a Host header as the
// request's host.
func NewHTTPRequest(ctx context.Context, a *corev1.HTTPGetAction, container *corev1.Container, podIP, agent string) (*http.Request, error) {
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	host := a.Host
	if host == "" {
		host = podIP
	}
	port, err := resolvePort(a.Port, container)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(a.Path)
	if err != nil {
		// Kubelet passes an unparsable path along as is rather than reject
		// it this late.
		u = &url.URL{Path: a.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	headers := make(http.Header, len(a.HTTPHeaders)+2)
	for _, h := range a.HTTPHeaders {
		headers.Add(h.Name, h.Value)
	}
	if _, ok := headers["User-Agent"]; !ok {
		headers.Set("User-Agent", agent)
	}
	if _, ok := headers["Accept"]; !ok {
		headers.Set("Accept", "*/*")
	} else if headers.Get("Accept") == "" {
		// An Accept header set empty asks for none.
		headers.Del("Accept")
	}
	req.Header = headers
	req.Host = headers.Get("Host")
	return req, nil
}

// sameHostRedirects follows a redirect only to the host first asked, as
// kubelet does: one elsewhere ends the probe with the 3xx response.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= maxRedirects {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}
