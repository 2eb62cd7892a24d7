package provider

// Totals a host keeps of rbn's work on it since rbn-kubelet started, for
// rbn's own metrics (internal/metrics reads them at each scrape).

// SweepStats are a host's orphan sweeps since rbn-kubelet started: how
// many ran and failed (some object could not be listed or removed; the
// next sweep tries again), and the orphans they removed.
type SweepStats struct {
	Sweeps, Failed uint64
	Removed        struct{ Pods, Containers, Volumes uint64 }
}

// recordSweep counts one orphan sweep of a node on the host.
func (h *Host) recordSweep(removed removedCounts, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sweeps.Sweeps++
	if err != nil {
		h.sweeps.Failed++
	}
	h.sweeps.Removed.Pods += uint64(removed.Pods)
	h.sweeps.Removed.Containers += uint64(removed.Containers)
	h.sweeps.Removed.Volumes += uint64(removed.Volumes)
}

// SweepStats returns the host's orphan sweep totals.
func (h *Host) SweepStats() SweepStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sweeps
}

// RelayStats are a host's image pulls through rbn-kubelet's relay: how
// many were asked and failed, and the blobs and bytes the successful ones
// sent the host (layers it already had are not sent).
type RelayStats struct {
	Pulls, Failed, Blobs, Bytes uint64
}

// recordRelay counts one relayed pull.
func (h *Host) recordRelay(blobs int, bytes int64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.relays.Pulls++
	if err != nil {
		h.relays.Failed++
		return
	}
	h.relays.Blobs += uint64(blobs)
	h.relays.Bytes += uint64(bytes)
}

// RelayStats returns the host's relayed pull totals.
func (h *Host) RelayStats() RelayStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.relays
}
