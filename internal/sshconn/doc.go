// Package sshconn keeps one SSH connection to a build host alive and opens
// channels on it: strict host-key checking from known_hosts data (never trust
// on first use), keepalives that notice a dead peer, redial with capped
// exponential backoff, and errors classified so that a node's condition can
// say why the host is unreachable.
//
// It knows nothing of Kubernetes or podman: callers ask it for a stream to a
// remote unix socket or TCP address.
package sshconn
