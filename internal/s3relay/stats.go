package s3relay

import (
	"sync"
	"time"
)

// Direction of a transfer, as Stats reports it.
type Direction string

const (
	Upload   Direction = "upload"
	Download Direction = "download"
)

// DirectionStats counts the transfers of one direction since the Relay was
// made: what metrics report (cumulative, never reset).
type DirectionStats struct {
	// Succeeded and Failed count the transfers (Upload or Download calls)
	// by outcome; Attempts every attempt they made (retries included).
	Succeeded, Failed, Attempts uint64
	// Bytes moved by the transfers that succeeded.
	Bytes uint64
	// Duration: the time spent in the transfers, succeeded or not.
	Duration time.Duration
}

// stats is a Relay's counters.
type stats struct {
	mu  sync.Mutex
	dir map[Direction]DirectionStats
}

func (s *stats) record(d Direction, res Result, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == nil {
		s.dir = map[Direction]DirectionStats{}
	}
	st := s.dir[d]
	if err != nil {
		st.Failed++
	} else {
		st.Succeeded++
		st.Bytes += uint64(max(res.Bytes, 0))
	}
	st.Attempts += uint64(max(res.Attempts, 0))
	st.Duration += took
	s.dir[d] = st
}

// Stats returns the counters of every transfer made through the Relay's
// clients, by direction.
func (r *Relay) Stats() map[Direction]DirectionStats {
	r.stats.mu.Lock()
	defer r.stats.mu.Unlock()
	out := make(map[Direction]DirectionStats, 2)
	for _, d := range []Direction{Upload, Download} {
		out[d] = r.stats.dir[d]
	}
	return out
}
