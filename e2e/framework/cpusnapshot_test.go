package framework

import (
	"os"
	"reflect"
	"testing"
)

func TestParseProcTicks(t *testing.T) {
	got, ok := parseProcTicks("4242 (rbn kubelet (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 120 30 7 3 20 0 12 0 1234 5678 90")
	if !ok || got != (ProcTicks{Comm: "rbn kubelet (x)", Ticks: 150, Start: 1234}) {
		t.Errorf("got %+v, %v", got, ok)
	}
	kw, ok := parseProcTicks("77 (kworker/u8:0-writeback) I 2 0 0 0 -1 69238880 0 0 0 0 0 40 0 0 20 0 1 0 99 0 0")
	if !ok || kw.Comm != "kworker" || kw.Ticks != 40 {
		t.Errorf("a kernel worker: got %+v, %v; want its CPU under kworker", kw, ok)
	}
	if _, ok := parseProcTicks("no command name"); ok {
		t.Error("a line without a command name parsed")
	}
}

func TestMachineBusy(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	if got := machineBusy("cpu  100 2 30 5000 40 5 6 7 0 0\ncpu0 50 1 15 2500 20 2 3 3 0 0\n"); got != 150 {
		t.Errorf("busy = %v, want 150 (idle and iowait left out)", got)
	}
	if got := machineBusy("intr 1 2 3\n"); got != 0 {
		t.Errorf("busy of a file without the cpu line = %v", got)
	}
}

func TestCPUUseUntil(t *testing.T) {
	before := CPUSnapshot{Busy: 1000, Procs: map[int]ProcTicks{
		1: {"sshd", 10, 1}, 2: {"podman", 100, 1}, 3: {"cat", 5, 1}, 4: {"old", 7, 1}, 6: {"kworker", 30, 1}, 7: {"sh", 10, 1},
	}}
	after := CPUSnapshot{Busy: 1300, Procs: map[int]ProcTicks{
		1: {"sshd", 60, 1},    // 50 more
		2: {"podman", 100, 1}, // idle: left out
		4: {"new", 3, 50},     // pid reused (another start time): counts whole
		5: {"sshd", 20, 60},   // started in between: counts whole
		6: {"kworker", 32, 1}, // 2 more
		7: {"sh", 4, 80},      // pid reused by the same command: counts whole
	}}
	u := before.Until(after)
	if u.Busy != 300 {
		t.Errorf("busy = %v, want 300", u.Busy)
	}
	if want := map[string]float64{"sshd": 70, "new": 3, "kworker": 2, "sh": 4}; !reflect.DeepEqual(u.ByComm, want) {
		t.Errorf("by command = %v, want %v", u.ByComm, want)
	}
	if got, want := u.Top(1), []CommTicks{{"sshd", 70}}; !reflect.DeepEqual(got, want) {
		t.Errorf("top 1 = %v, want %v", got, want)
	}
}

func TestTakeCPUSnapshotSeesThisProcess(t *testing.T) {
	s := TakeCPUSnapshot()
	if s.Busy <= 0 {
		t.Errorf("machine busy = %v", s.Busy)
	}
	if _, ok := s.Procs[os.Getpid()]; !ok {
		t.Errorf("this process (%d) is not among the %d read", os.Getpid(), len(s.Procs))
	}
}
