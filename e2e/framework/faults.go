package framework

import (
	"encoding/json"
	"testing"
)

// The fault suite (issue #17): each end-to-end test that injects a fault
// records what it measured of its outcome with a Fault; at the test's end
// the record is logged as one line, FaultMarker and JSON, whether the test
// passed or not. e2e/cmd/faultreport turns those lines of a run's log into
// docs/reliability.md, beside the Catalogue of faults the suite is meant to
// inject.

// FaultMarker starts each fault record line in the test log.
const FaultMarker = "RBN-FAULT "

// FaultRecord is one injected fault's outcome, as its test measured it.
type FaultRecord struct {
	// Fault is the Catalogue entry's Name.
	Fault string `json:"fault"`
	// Test is the test that injected it.
	Test string `json:"test"`
	// Passed: the test found every expectation met.
	Passed bool `json:"passed"`
	// Jobs is the number of pods exposed to the fault.
	Jobs int `json:"jobs"`
	// Lost counts pods that did not end as the fault's expectation says
	// (a build that should have completed and did not, or one reported
	// succeeded that did not finish); Duplicated, pods whose work ran
	// again when it must not (a container started twice); Orphans, podman
	// objects left on a host for pods that are gone; SecretsLeaked, secret
	// values found where they must not be. -1: not measured by this test.
	Lost          int `json:"lost"`
	Duplicated    int `json:"duplicated"`
	Orphans       int `json:"orphans"`
	SecretsLeaked int `json:"secretsLeaked"`
	// Figures are the measured times and counts, in words.
	Figures []string `json:"figures,omitempty"`
}

// Fault records the outcome of one injected fault for the report.
type Fault struct {
	t   testing.TB
	rec FaultRecord
}

// RecordFault starts the record of catalogue fault name, injected by t,
// with nothing measured yet (every count -1); it is logged when t ends.
func RecordFault(t testing.TB, name string) *Fault {
	f := &Fault{t: t, rec: FaultRecord{Fault: name, Test: t.Name(), Lost: -1, Duplicated: -1, Orphans: -1, SecretsLeaked: -1}}
	t.Cleanup(func() {
		f.rec.Passed = !t.Failed()
		b, err := json.Marshal(f.rec)
		if err != nil {
			t.Errorf("fault record: %v", err)
			return
		}
		t.Log(FaultMarker + string(b))
	})
	return f
}

// Jobs sets the number of pods exposed to the fault.
func (f *Fault) Jobs(n int) { f.rec.Jobs = n }

// Lost sets the pods that did not end as expected.
func (f *Fault) Lost(n int) { f.rec.Lost = n }

// Duplicated sets the pods whose work ran again.
func (f *Fault) Duplicated(n int) { f.rec.Duplicated = n }

// Orphans sets the podman objects left on the hosts for pods that are gone.
func (f *Fault) Orphans(n int) { f.rec.Orphans = n }

// SecretsLeaked sets the secret values found where they must not be.
func (f *Fault) SecretsLeaked(n int) { f.rec.SecretsLeaked = n }

// Figure adds a measured figure, in words ("NotReady 0.1 s after the cut").
func (f *Fault) Figure(s string) { f.rec.Figures = append(f.rec.Figures, s) }

// CatalogueEntry is a fault the suite is meant to inject and what must
// follow.
type CatalogueEntry struct {
	Name, Expected string
}

// Catalogue is the fault suite of issue #17, in its order.
var Catalogue = []CatalogueEntry{
	{"SSH dropped with jobs running", "the node goes NotReady; pods whose NotReady toleration runs out are evicted (and stopped once the host is back), the others run on in the same containers to their end"},
	{"SSH dropped during an upload", "the upload waits for the host and is redone; the job succeeds with the whole object, no incomplete upload is left"},
	{"SSH dropped during a relayed pull", "the pull waits for the host and starts over once it is back, not counted against the image (no back-off); the job runs once and succeeds"},
	{"podman stopped", "the node goes NotReady with PodmanUnavailable and Ready again when podman is back"},
	{"host rebooted", "a restartPolicy Never job fails with HostRebooted, never reported succeeded; an Always pod restarts once; nothing of the old run is left"},
	{"host disk filled", "the node reports DiskPressure; the pod filling the disk is evicted as the kubelet ranks pods, its data leaves the host, and the pressure ends"},
	{"registry stalling mid-blob", "the relayed pull is cancelled after podman.imagePullProgressDeadline with no byte, the pod says why (ErrImagePull, ImagePullBackOff naming the registry and the blob), and the pull is retried with back-off until the registry answers"},
	{"rbn-kubelet killed at each step of a pod's start", "the replica that takes over completes the start once"},
	{"pod deleted while rbn-kubelet is down", "once served again, the pod gets its preStop hook and SIGTERM within its grace period; nothing is left on the host"},
	{"host key changed", "rbn never connects, the node is NotReady with HostKeyMismatch and offers no pods"},
	{"RemoteBuildNode deleted with running pods", "the pods' containers are stopped and removed from the host, the Node goes"},
	{"SSH dropped when a volume is deleted", "the PersistentVolume waits, Released with its finalizer and its data, and goes with its data once the host is back"},
	{"SSH dropped under a login through a Service", "the open session ends and new logins fail while the host is away; once it is back every login through the Service works again"},
	{"rbn-kubelet's credential used to write what it does not serve", "refused by the admission policies: other Nodes, other node Leases, unbound tokens"},
}
