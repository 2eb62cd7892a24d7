// Package svcrelay is rbn-kubelet's end of a pod's cluster Services: a pod
// on a build host cannot reach Service addresses, so the forwarder in its
// network namespace sends every connection it accepts over an SSH remote
// forward (a Unix socket on the build host) to rbn-kubelet, prefixed with a
// header naming the loopback address it accepted on. This package reads
// that header, finds the Service the address stands for, and relays the
// connection to the Service's cluster IP from inside the cluster.
package svcrelay
