// Package version holds the build's version, set with -ldflags -X.
package version

// Version is rbn's version.
var Version = "v0.1.0-dev"

// KubeletVersion is what rbn nodes report as their kubelet version: the
// Kubernetes API level rbn is built against, marked as rbn.
const KubeletVersion = "v1.37.2-rbn"
