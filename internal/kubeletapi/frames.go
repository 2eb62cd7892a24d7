package kubeletapi

import (
	"bufio"
	"net"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"

	"github.com/remote-build-nodes/rbn/internal/spdyconn"
)

// spdyFrames hands a streaming route's SPDY connection (exec, attach,
// port-forward) a hijacked connection that writes each frame whole
// (spdyconn.Frames: one TLS record and one system call instead of three
// for a data frame). Another upgrade (WebSocket) is left alone: its frames
// are not SPDY's.
func spdyFrames(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get(httpstream.HeaderUpgrade), spdy.HeaderSpdy31) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(framesHijacker{w}, r)
	})
}

// framesHijacker hijacks its ResponseWriter's connection wrapped in
// spdyconn.Frames. The upgrade writes its frames to the connection, never
// to the returned ReadWriter's Writer.
type framesHijacker struct{ http.ResponseWriter }

func (h framesHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return spdyconn.Frames(conn), rw, nil
}

// Unwrap is for http.ResponseController.
func (h framesHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
