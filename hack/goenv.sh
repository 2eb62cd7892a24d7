# Go build settings every hack/ script and the Makefile share. Source it.
# The podman bindings need these tags to build without cgo libraries
# (gpgme, btrfs, devicemapper) that a remote client never uses.
export CGO_ENABLED=0
export RBN_GO_TAGS="remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper"
export GOFLAGS="-tags=${RBN_GO_TAGS}"
# A -tags flag replaces GOFLAGS' tags: the e2e tests and the benchmarks'
# entry points (package e2e, build tags e2e and bench) build with these.
export RBN_E2E_TAGS="e2e,bench,${RBN_GO_TAGS}"
