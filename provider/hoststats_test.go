package provider

import (
	"testing"
	"time"
)

const procSample = `cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13366730 2680 0 14890 0 0 0
intr 199292772 0 0 0
ctxt 12345
btime 1732521600
processes 100
MemTotal:       16303428 kB
MemFree:         1115780 kB
MemAvailable:    8547236 kB
Buffers:          512344 kB
Cached:          6998116 kB
AnonPages:       5226004 kB
HugePages_Total:       0
`

func TestParseHostUsage(t *testing.T) {
	now := time.Unix(1732525200, 0)
	u, err := parseHostUsage([]byte(procSample), now)
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq+steal jiffies, 10 ms each.
	wantCPU := uint64(10132153+290696+3084719+0+25195+0) * 10_000_000
	if u.CPUNanos != wantCPU {
		t.Errorf("CPUNanos %d, want %d", u.CPUNanos, wantCPU)
	}
	if !u.BootTime.Equal(time.Unix(1732521600, 0)) || !u.Time.Equal(now) {
		t.Errorf("boot %v time %v", u.BootTime, u.Time)
	}
	if u.MemTotal != 16303428*1024 || u.MemFree != 1115780*1024 || u.MemAvailable != 8547236*1024 || u.AnonPages != 5226004*1024 {
		t.Errorf("memory %+v", u)
	}
	if u.WorkingSet() != (16303428-8547236)*1024 {
		t.Errorf("working set %d", u.WorkingSet())
	}
	for name, bad := range map[string]string{
		"no cpu line":    "MemTotal: 1 kB\n",
		"no meminfo":     "cpu  1 2 3 4 5 6 7 8 9 10\n",
		"short cpu line": "cpu 1 2\nMemTotal: 1 kB\n",
		"garbage number": "cpu  1 x 3 4 5 6 7 8 9 10\nMemTotal: 1 kB\n",
	} {
		if _, err := parseHostUsage([]byte(bad), now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
