package provider

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hostUsage is the build host's own CPU and memory use, from its /proc:
// what kubelet reports for a node (it reads the root cgroup; /proc/stat and
// /proc/meminfo are the same figures on any cgroup version).
type hostUsage struct {
	Time     time.Time
	BootTime time.Time
	// CPUNanos is the busy CPU time of all CPUs since boot (user, nice,
	// system, irq, softirq, steal).
	CPUNanos uint64
	// Memory, in bytes.
	MemTotal, MemFree, MemAvailable, AnonPages uint64
}

// WorkingSet is memory in use that the kernel cannot just drop: total
// minus what it says is available (free plus reclaimable caches).
func (u *hostUsage) WorkingSet() uint64 { return sub(u.MemTotal, u.MemAvailable) }

// userHZ is the unit of CPU times in /proc/stat (USER_HZ), 100 on every
// Linux architecture, whatever the kernel's internal HZ.
const userHZ = 100

// samplerScript prints /proc/stat and /proc/meminfo, then a line "@@",
// every $1 seconds, for as long as its session lives: one shell per host
// for all readings (starting a command over SSH costs a shell's start-up,
// hundreds of ms on a busy host). The second reading comes after 1 s, so
// that a CPU rate is known soon after the first request.
const samplerScript = `r() { cat /proc/stat /proc/meminfo || exit 1; echo @@; }; r; sleep 1; while :; do r; sleep "$1"; done`

// hostSampler reads the host's /proc every interval while someone asks
// for it, as kubelet's cAdvisor housekeeping does: readings are at most an
// interval old, and two of them give the CPU rate.
type hostSampler struct {
	host     *Host
	interval time.Duration
	now      func() time.Time
	logger   *slog.Logger

	mu       sync.Mutex
	cur      *hostUsage // newest reading
	prev     *hostUsage // the one before
	err      error      // why the last attempt to read failed
	running  bool
	first    chan struct{} // closed at the first reading or failure of a run
	runDone  chan struct{} // closed when the run's goroutine has returned
	lastUsed time.Time
	cancel   context.CancelFunc
}

// samplerIdle stops a sampler nobody asked for in this long.
const samplerIdle = 10 * time.Minute

func newHostSampler(h *Host, interval time.Duration, now func() time.Time, logger *slog.Logger) *hostSampler {
	return &hostSampler{host: h, interval: interval, now: now, logger: logger}
}

// readings returns the newest reading and the one before it (nil when
// there is none yet), starting the sampler if needed and waiting for its
// first reading within ctx.
func (s *hostSampler) readings(ctx context.Context) (cur, prev *hostUsage, err error) {
	s.mu.Lock()
	s.lastUsed = s.now()
	if !s.running {
		s.running = true
		s.first = make(chan struct{})
		runCtx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		done := make(chan struct{})
		s.runDone = done
		go func() { defer close(done); s.run(runCtx, s.first) }()
	}
	first := s.first
	s.mu.Unlock()
	select {
	case <-first:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("host /proc: no reading yet: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, nil, s.err
	}
	return s.cur, s.prev, nil
}

// stop ends the sampler's session and waits for its goroutine.
func (s *hostSampler) stop() {
	s.mu.Lock()
	if s.running {
		s.cancel()
		s.running = false
	}
	done := s.runDone
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// run keeps a sampling session up (reopened after a broken connection)
// until ctx ends or nobody asked for a reading in samplerIdle.
func (s *hostSampler) run(ctx context.Context, first chan struct{}) {
	var once sync.Once
	signal := func() { once.Do(func() { close(first) }) }
	defer signal()
	for ctx.Err() == nil {
		err := s.session(ctx, signal)
		s.mu.Lock()
		if err != nil && ctx.Err() == nil {
			s.err = err
		}
		idle := s.now().Sub(s.lastUsed) > samplerIdle
		if idle {
			s.running = false
			s.cur, s.prev = nil, nil
		}
		s.mu.Unlock()
		signal()
		if idle {
			return
		}
		if err != nil {
			s.logger.Debug("host sampler: session ended", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.interval):
		}
	}
}

// session reads readings from one sampling session until it breaks, ctx
// ends or the sampler has been idle too long.
func (s *hostSampler) session(ctx context.Context, signal func()) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	secs := strconv.Itoa(max(1, int(s.interval/time.Second)))
	out, err := s.host.SSH().Stream(sctx, "sh", "-c", samplerScript, "rbn-sampler", secs)
	if err != nil {
		return fmt.Errorf("read host /proc: %w", err)
	}
	defer out.Close()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var block bytes.Buffer
	for sc.Scan() {
		if sc.Text() != "@@" {
			block.Write(sc.Bytes())
			block.WriteByte('\n')
			continue
		}
		u, err := parseHostUsage(block.Bytes(), s.now())
		block.Reset()
		s.mu.Lock()
		if err == nil {
			s.prev, s.cur, s.err = s.cur, u, nil
		} else {
			s.err = err
		}
		idle := s.now().Sub(s.lastUsed) > samplerIdle
		s.mu.Unlock()
		signal()
		if idle {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read host /proc: %w", err)
	}
	return errors.New("read host /proc: sampling session ended")
}

// parseHostUsage reads /proc/stat followed by /proc/meminfo.
func parseHostUsage(data []byte, now time.Time) (*hostUsage, error) {
	u := &hostUsage{Time: now}
	var haveCPU, haveMem bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "cpu": // the all-CPU line: user nice system idle iowait irq softirq steal guest guest_nice
			if len(f) < 9 {
				return nil, fmt.Errorf("/proc/stat: short cpu line %q", sc.Text())
			}
			var busy uint64
			for _, i := range []int{1, 2, 3, 6, 7, 8} { // guest time is part of user already
				n, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("/proc/stat: cpu field %d: %w", i, err)
				}
				busy += n
			}
			u.CPUNanos = busy * (uint64(time.Second) / userHZ)
			haveCPU = true
		case "btime":
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat: btime: %w", err)
			}
			u.BootTime = time.Unix(n, 0)
		case "MemTotal:", "MemFree:", "MemAvailable:", "AnonPages:":
			n, err := meminfoBytes(f)
			if err != nil {
				return nil, err
			}
			switch f[0] {
			case "MemTotal:":
				u.MemTotal, haveMem = n, true
			case "MemFree:":
				u.MemFree = n
			case "MemAvailable:":
				u.MemAvailable = n
			case "AnonPages:":
				u.AnonPages = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !haveCPU || !haveMem {
		return nil, fmt.Errorf("host /proc: no %s", map[bool]string{true: "MemTotal in /proc/meminfo", false: "cpu line in /proc/stat"}[haveCPU])
	}
	return u, nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// meminfoBytes reads the value of a /proc/meminfo line split into fields
// ("MemAvailable:", "20000000", "kB"), in bytes.
func meminfoBytes(f []string) (uint64, error) {
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/meminfo: %s %w", f[0], err)
	}
	if len(f) > 2 && f[2] == "kB" {
		n *= 1024
	}
	return n, nil
}
