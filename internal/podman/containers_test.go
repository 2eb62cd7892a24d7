package podman

import (
	"testing"
	"time"

	"github.com/containers/podman/v5/libpod/define"
)

// A container that ran when its host rebooted: podman resets its state
// (podman 4: "created", podman 5: "exited"), keeps the start time and
// records no end, exit code 0. It reads as lost, exited with SIGKILL's
// code, never as one to start or one that succeeded.
func TestContainerStateLost(t *testing.T) {
	started := time.Date(2026, 12, 5, 5, 54, 42, 0, time.UTC)
	finished := started.Add(time.Minute)
	for _, tc := range []struct {
		name       string
		state      define.InspectContainerState
		lost       bool
		exited     bool
		exitCode   int32
		wantStatus string
	}{
		{"running", define.InspectContainerState{Status: "running", Running: true, StartedAt: started}, false, false, 0, "running"},
		{"created, never started", define.InspectContainerState{Status: "created"}, false, false, 0, "created"},
		{"exited with its end recorded", define.InspectContainerState{Status: "exited", ExitCode: 0, StartedAt: started, FinishedAt: finished}, false, true, 0, "exited"},
		{"failed with its end recorded", define.InspectContainerState{Status: "exited", ExitCode: 3, StartedAt: started, FinishedAt: finished}, false, true, 3, "exited"},
		{"reset by podman 4 after a reboot", define.InspectContainerState{Status: "created", StartedAt: started}, true, true, LostExitCode, "created"},
		{"reset by podman 5 after a reboot", define.InspectContainerState{Status: "exited", StartedAt: started}, true, true, LostExitCode, "exited"},
		{"configured after a reboot", define.InspectContainerState{Status: "configured", StartedAt: started}, true, true, LostExitCode, "configured"},
		{"paused", define.InspectContainerState{Status: "paused", StartedAt: started}, false, false, 0, "paused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.state
			s := containerState(&define.InspectContainerData{ID: "c1", State: &st})
			if s.Lost != tc.lost || s.Exited() != tc.exited || s.ExitCode != tc.exitCode || s.Status != tc.wantStatus {
				t.Errorf("lost %t exited %t exit code %d status %q; want %t %t %d %q", s.Lost, s.Exited(), s.ExitCode, s.Status, tc.lost, tc.exited, tc.exitCode, tc.wantStatus)
			}
		})
	}
}
