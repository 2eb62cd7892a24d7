package framework

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// CPUSnapshot is the machine's CPU time at one moment: its busy time over
// all CPUs and every process's, in clock ticks. Two snapshots tell where a
// stretch of work spent the machine's CPU, whichever processes did it.
type CPUSnapshot struct {
	// Busy is /proc/stat's cpu line less idle and iowait.
	Busy float64
	// Procs is utime+stime by pid, with the command name.
	Procs map[int]ProcTicks
}

// ProcTicks is one process's CPU time, command name and start time (which
// tells a reused pid from the process that had it).
type ProcTicks struct {
	Comm  string
	Ticks float64
	Start float64
}

// TakeCPUSnapshot reads /proc/stat and every /proc/<pid>/stat. A process
// that ends while it reads is left out.
func TakeCPUSnapshot() CPUSnapshot {
	s := CPUSnapshot{Procs: map[int]ProcTicks{}}
	if raw, err := os.ReadFile("/proc/stat"); err == nil {
		s.Busy = machineBusy(string(raw))
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		if p, ok := parseProcTicks(string(raw)); ok {
			s.Procs[pid] = p
		}
	}
	return s
}

// machineBusy sums the first cpu line's user, nice, system, irq, softirq
// and steal.
func machineBusy(stat string) float64 {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	busy := 0.0
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseFloat(f[i], 64)
		busy += v
	}
	return busy
}

func parseProcTicks(stat string) (ProcTicks, bool) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndex(stat, ") ")
	if open < 0 || end < open {
		return ProcTicks{}, false
	}
	ticks, err := statSum(stat, 11, 12)
	if err != nil {
		return ProcTicks{}, false
	}
	start, err := statSum(stat, 19)
	if err != nil {
		return ProcTicks{}, false
	}
	return ProcTicks{Comm: commGroup(stat[open+1 : end]), Ticks: ticks, Start: start}, true
}

// commGroup is the name a command's CPU is reported under: the kernel's
// workers rename themselves after the work they take up (kworker/u8:0-
// writeback, kworker/u8:0-events_unbound), so they count as one.
func commGroup(comm string) string {
	if strings.HasPrefix(comm, "kworker/") {
		return "kworker"
	}
	return comm
}

// CPUUse is the CPU a stretch of work took, in clock ticks: the machine's
// busy time and each command's share of it.
type CPUUse struct {
	Busy   float64
	ByComm map[string]float64
}

// Until is the CPU spent from s to later: a process found only in later
// (a pid new, or reused: another start time) started in between and
// counts whole; a process that ended in between is lost to its command
// (the machine's busy time still has it).
func (s CPUSnapshot) Until(later CPUSnapshot) CPUUse {
	u := CPUUse{Busy: later.Busy - s.Busy, ByComm: map[string]float64{}}
	for pid, p := range later.Procs {
		d := p.Ticks
		if q, ok := s.Procs[pid]; ok && q.Start == p.Start {
			d -= q.Ticks
		}
		if d > 0 {
			u.ByComm[p.Comm] += d
		}
	}
	return u
}

// CommTicks is a command's CPU time.
type CommTicks struct {
	Comm  string
	Ticks float64
}

// Top returns the n commands that took the most CPU, most first.
func (u CPUUse) Top(n int) []CommTicks {
	out := make([]CommTicks, 0, len(u.ByComm))
	for c, v := range u.ByComm {
		out = append(out, CommTicks{c, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ticks != out[j].Ticks {
			return out[i].Ticks > out[j].Ticks
		}
		return out[i].Comm < out[j].Comm
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
