package framework

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The local machine, from /proc: the stack's processes (rbn-kubelet, the
// hosts' podman and conmon) run on it, beside the tests.

// ProcCPU returns utime+stime of a process in clock ticks.
func ProcCPU(pid int) (float64, error) { return ProcStatSum(pid, 11, 12) }

// ProcCPUWithChildren is ProcCPU plus the CPU of the children the process
// has waited for (cutime, cstime).
func ProcCPUWithChildren(pid int) (float64, error) { return ProcStatSum(pid, 11, 12, 13, 14) }

// ProcStatSum sums fields of /proc/<pid>/stat, counted from 0 at the field
// after the command name (state): utime is 11, stime 12, cutime 13, cstime 14.
func ProcStatSum(pid int, fields ...int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return statSum(string(raw), fields...)
}

func statSum(stat string, fields ...int) (float64, error) {
	i := strings.LastIndex(stat, ") ")
	if i < 0 {
		return 0, fmt.Errorf("stat: unexpected format")
	}
	f := strings.Fields(stat[i+2:])
	sum := 0.0
	for _, k := range fields {
		if k >= len(f) {
			return 0, fmt.Errorf("stat: too few fields")
		}
		v, err := strconv.ParseFloat(f[k], 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// ProcStatus returns the kB fields of /proc/<pid>/status (VmRSS, VmHWM, ...).
func ProcStatus(pid int) (map[string]int64, error) {
	return KBFile(fmt.Sprintf("/proc/%d/status", pid))
}

// Meminfo returns the kB fields of /proc/meminfo (nil when unreadable).
func Meminfo() map[string]int64 {
	m, _ := KBFile("/proc/meminfo")
	return m
}

// KBFile reads the "Key: N kB" lines of a /proc file.
func KBFile(path string) (map[string]int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKB(string(raw)), nil
}

func parseKB(text string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// Loadavg is the 1, 5 and 15-minute load averages, "?" when unreadable.
func Loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// KernelRelease is the machine's kernel release (uname -r).
func KernelRelease() (string, error) {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(raw)), nil
}

// TCPConn is an established TCP connection, as ss prints its ends.
type TCPConn struct{ Local, Peer string }

// TCPConns lists the established TCP connections of process pid (ss -tnp),
// in pid's network namespace (a pod's, for rbn-kubelet in the in-cluster
// mode).
func TCPConns(ctx context.Context, pid int) ([]TCPConn, error) {
	out, err := Run(ctx, []string{"nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--", "ss", "-Htnp", "state", "established"}, nil)
	if err != nil {
		return nil, err
	}
	return parseSS(out, pid), nil
}

func parseSS(out string, pid int) []TCPConn {
	marker := fmt.Sprintf("pid=%d,", pid)
	var conns []TCPConn
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// Recv-Q Send-Q Local Peer Process
		if len(f) >= 5 && strings.Contains(line, marker) {
			conns = append(conns, TCPConn{Local: f[2], Peer: f[3]})
		}
	}
	return conns
}
