package main

import (
	"strings"
	"testing"

	"github.com/remote-build-nodes/rbn/e2e/framework"
)

func TestParseAndRender(t *testing.T) {
	log := `=== RUN   TestHostReboot
    reboot_test.go:120: RBN-FAULT {"fault":"host rebooted","test":"TestHostReboot","passed":true,"jobs":2,"lost":0,"duplicated":0,"orphans":0,"secretsLeaked":-1,"figures":["boot id seen 3 s after"]}
--- PASS: TestHostReboot (40.00s)
    eviction_test.go:99: RBN-FAULT {"fault":"SSH dropped with jobs running","test":"TestNotReadyEviction","passed":false,"jobs":2,"lost":1,"duplicated":0,"orphans":3,"secretsLeaked":-1}
    x_test.go:1: RBN-FAULT {"fault":"made up","test":"TestX","passed":true,"jobs":0,"lost":-1,"duplicated":-1,"orphans":-1,"secretsLeaked":-1}
`
	recs, err := parse(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Fault != "host rebooted" || recs[1].Lost != 1 || recs[1].Passed {
		t.Fatalf("parsed %+v", recs)
	}
	cat := []framework.CatalogueEntry{
		{Name: "SSH dropped with jobs running", Expected: "evicted or run on"},
		{Name: "host rebooted", Expected: "HostRebooted"},
		{Name: "host disk filled", Expected: "DiskPressure"},
	}
	got := render(recs, cat, "make test at abc")
	for _, want := range []string{
		"from the log of make test at abc",
		"**3 faults injected, 1 with an outcome other than expected; 4 jobs exposed: 1 lost, 0 duplicated; 3 orphans left on hosts; 0 secrets leaked**",
		"| host rebooted | `TestHostReboot` | yes | 2 | 0 | 0 | 0 | n/m | boot id seen 3 s after |",
		"| SSH dropped with jobs running | `TestNotReadyEviction` | **no** | 2 | 1 | 0 | 3 | n/m |  |",
		"- **host rebooted**: HostRebooted.",
		"- **made up**: not in the catalogue",
		"## Not injected by this run\n\n- host disk filled (expected: DiskPressure)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if _, err := parse(strings.NewReader("x: RBN-FAULT {broken")); err == nil {
		t.Error("a broken record parsed")
	}
}
