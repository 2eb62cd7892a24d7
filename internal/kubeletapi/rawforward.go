package kubeletapi

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/remote-build-nodes/rbn/internal/connrelay"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/spdyconn"
)

// rawPortForward serves rbn's raw port-forward (spdyconn.RawPortForward)
// on the port-forward route, authorized as kubelet's: it connects to the
// pod's port first, answers a failure as an HTTP error, and otherwise
// upgrades the connection and relays it to the pod's port both ways,
// half-closes passed on, until both sides ended.
func (s *Server) rawPortForward(w http.ResponseWriter, r *http.Request) {
	dial := handlersOf(r.Context()).DialPod
	if dial == nil {
		spdyconn.RefuseRaw(w, http.StatusNotImplemented, errNotImplemented("raw port-forward").Error())
		return
	}
	port, err := strconv.ParseInt(r.URL.Query().Get("port"), 10, 32)
	if err != nil || port < 1 || port > 65535 {
		spdyconn.RefuseRaw(w, http.StatusBadRequest, "raw port-forward: invalid port "+strconv.Quote(r.URL.Query().Get("port")))
		return
	}
	vars := mux.Vars(r)
	pod, err := dial(r.Context(), vars["namespace"], vars["pod"], int32(port))
	if err != nil {
		err = apiError(err)
		spdyconn.RefuseRaw(w, httpStatus(err), err.Error())
		return
	}
	client, buffered, err := spdyconn.AcceptRaw(w)
	if err != nil {
		_ = pod.Close()
		logging.FromContext(r.Context()).Info("raw port-forward: upgrade failed", "err", err)
		return
	}
	_, _, _ = connrelay.Relay(connrelay.Side{Conn: client, Reader: buffered}, connrelay.Side{Conn: pod})
}
