// Package node turns a RemoteBuildNode and the facts read from its host into
// the Kubernetes Node that represents it. Everything here is a pure function
// of its inputs, tested with golden files.
package node
