package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

// ---------------------------------------------------------------------------------------------
// rbn-kubelet's process.

// restartKubelet restarts rbn-kubelet (hack/kubelet.sh) and waits until the
// new process renewed every host node's Lease and the stack is quiet.
func (b *bench) restartKubelet(ctx context.Context) error {
	kubelet := func(verb string) error { return b.stack.KubeletErr(ctx, verb) }
	// stop, then start (what restart does), so that a Lease renewed after
	// "since" can only be the new process's.
	if err := kubelet("stop"); err != nil {
		return err
	}
	since := time.Now()
	if err := kubelet("start"); err != nil {
		return err
	}
	for _, h := range b.hosts {
		err := framework.Poll(ctx, "the restarted rbn-kubelet to renew the Lease of "+h.Name, 2*time.Minute, 200*time.Millisecond, func() (bool, string) {
			l, err := b.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, h.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return l.Spec.RenewTime != nil && l.Spec.RenewTime.After(since), fmt.Sprintf("renewed %v", l.Spec.RenewTime)
		})
		if err != nil {
			return err
		}
	}
	if err := b.waitNodesReady(ctx, b.hostNames(), time.Minute); err != nil {
		return err
	}
	// Its start-up (first host facts, image lists, status of the nodes) is
	// over once nothing writes for a while.
	b.quiesce(ctx)
	return nil
}

func (b *bench) hostNames() []string {
	var out []string
	for _, h := range b.hosts {
		out = append(out, h.Name)
	}
	return out
}

// hostsPodmanCPU sums, in clock ticks, the CPU of the hosts' podman API
// services (hack/hosts.sh records their pids) and of the short-lived
// processes they fork and reap for each call (runc, conmon --version, ...).
func (b *bench) hostsPodmanCPU() float64 {
	total := 0.0
	for _, h := range b.hosts {
		raw, err := os.ReadFile(filepath.Join(b.stack.State, "pids", fmt.Sprintf("host%d-podman.pid", h.Index)))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			continue
		}
		if v, err := framework.ProcCPUWithChildren(pid); err == nil {
			total += v
		}
	}
	return total
}

// containerRSS sums VmRSS of the hosts' conmon processes (their command
// lines name this stack's host dirs) and of the container processes they
// monitor. Shared pages count once per process: an upper bound.
func (b *bench) containerRSS() (kb int64, conmons int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	hostsDir := filepath.Join(b.stack.State, "hosts") + "/"
	mons := map[string]bool{}
	ppid := map[string]string{}
	for _, st := range stats {
		raw, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		s := string(raw)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndex(s, ") ")
		if lp < 0 || rp < lp {
			continue
		}
		pid := filepath.Base(filepath.Dir(st))
		if f := strings.Fields(s[rp+2:]); len(f) > 1 {
			ppid[pid] = f[1]
		}
		if s[lp+1:rp] == "conmon" {
			if cmd, err := os.ReadFile(filepath.Join(filepath.Dir(st), "cmdline")); err == nil && strings.Contains(string(cmd), hostsDir) {
				mons[pid] = true
			}
		}
	}
	for pid, parent := range ppid {
		if !mons[pid] && !mons[parent] {
			continue
		}
		n, _ := strconv.Atoi(pid)
		if st, err := framework.ProcStatus(n); err == nil {
			kb += st["VmRSS"]
		}
	}
	return kb, len(mons)
}

// throttleStat sums rbn-kubelet's waits on its own API client's rate limiter.
type throttleStat struct {
	n   int
	max time.Duration
}

func (t throttleStat) String() string {
	if t.n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d logged, longest %s", t.n, t.max.Round(100*time.Millisecond))
}

// throttleNote says what the logged waits are: client-go logs, at rbn's
// log level, only waits over 1 s and at most one per 10 s.
const throttleNote = "client-go logs at most one wait over 1 s per 10 s at rbn-kubelet's log level: a count of such records, so a lower bound on the waits, and the longest of them"

// kubeletThrottling reads rbn-kubelet's log for client-go's "Waited before
// sending request ... client-side throttling" records between from and to.
func (b *bench) kubeletThrottling(from, to time.Time) throttleStat {
	var st throttleStat
	f, err := os.Open(b.stack.KubeletLog())
	if err != nil {
		return st
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "client-side throttling") {
			continue
		}
		var at, delay string
		if strings.HasPrefix(line, "{") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			at, _ = rec["time"].(string)
			switch d := rec["delay"].(type) {
			case string:
				delay = d
			case float64: // slog's JSON handler writes durations in nanoseconds
				delay = time.Duration(d).String()
			}
		} else {
			at, delay = logfmtField(line, "time"), logfmtField(line, "delay")
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil || t.Before(from) || t.After(to) {
			continue
		}
		d, _ := time.ParseDuration(delay)
		st.n++
		st.max = max(st.max, d)
	}
	return st
}

// logfmtField returns the value of key in a slog text record.
func logfmtField(line, key string) string {
	i := strings.Index(" "+line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+1:]
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return strings.Trim(v, `"`)
}
