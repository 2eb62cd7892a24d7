// Package nodeservice gives each node rbn-kubelet serves an address of its
// own in the cluster, as every kubelet has: a Service without a selector in
// rbn's namespace, whose ClusterIP is the Node's InternalIP and whose port
// 10250 leads, through an EndpointSlice rbn-kubelet keeps, to the node's
// own kubelet API port on the replica that serves it. Prometheus's kubelet
// scrape (<InternalIP>:10250), metrics-server and the apiserver then each
// reach the right node whichever replica serves it.
package nodeservice

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Prefix starts every node Service's name.
const Prefix = "rbn-node-"

// maxName is a Service name's limit (an RFC 1035 label).
const maxName = 63

// Name is the name of node's Service: Prefix and the node's name when that
// is a valid Service name, else Prefix, as much of the name as fits with
// dots made dashes, and a hash of the whole name, so that distinct nodes
// never share a Service.
func Name(node string) string {
	if n := Prefix + node; len(n) <= maxName && !strings.ContainsAny(node, ".") && !strings.HasSuffix(node, "-") {
		return n
	}
	sum := sha256.Sum256([]byte(node))
	hash := hex.EncodeToString(sum[:])[:10]
	keep := strings.ReplaceAll(node, ".", "-")
	if room := maxName - len(Prefix) - 1 - len(hash); len(keep) > room {
		keep = keep[:room]
	}
	keep = strings.TrimRight(keep, "-")
	return Prefix + keep + "-" + hash
}
