# Go build settings every hack/ script and the Makefile share. Source it.
# The podman bindings need these tags to build without cgo libraries
# (gpgme, btrfs, devicemapper) that a remote client never uses.
export CGO_ENABLED=0
export GOFLAGS="-tags=remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper"
