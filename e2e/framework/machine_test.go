package framework

import (
	"reflect"
	"testing"
)

func TestStatSum(t *testing.T) {
	// The command name may hold spaces and parentheses: fields count from the last ") ".
	stat := "4242 (rbn kubelet (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 120 30 7 3 20 0 12 0 1234 5678 90"
	tests := []struct {
		name   string
		fields []int
		want   float64
		err    bool
	}{
		{name: "utime+stime", fields: []int{11, 12}, want: 150},
		{name: "with children", fields: []int{11, 12, 13, 14}, want: 160},
		{name: "too few fields", fields: []int{99}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statSum(stat, tt.fields...)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := statSum("no command name here"); err == nil {
		t.Error("a stat line without \") \" parsed")
	}
}

func TestParseKB(t *testing.T) {
	got := parseKB("Name:\trbn-kubelet\nVmHWM:\t  51200 kB\nVmRSS:\t  40960 kB\nThreads:\t12\nMemTotal:       16384000 kB\n")
	want := map[string]int64{"VmHWM": 51200, "VmRSS": 40960, "MemTotal": 16384000}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseSS(t *testing.T) {
	out := `0 0 127.0.0.1:40000 127.0.1.1:2303 users:(("rbn-kubelet",pid=77,fd=9))
0 0 127.0.0.1:40002 127.0.1.2:2303 users:(("rbn-kubelet",pid=77,fd=11))
0 0 127.0.0.1:40004 127.0.1.1:2303 users:(("rbn-kubelet",pid=770,fd=9))
0 0 127.0.0.1:40006 127.0.0.1:16503 users:(("kubectl",pid=78,fd=3))
`
	got := parseSS(out, 77)
	want := []TCPConn{{Local: "127.0.0.1:40000", Peer: "127.0.1.1:2303"}, {Local: "127.0.0.1:40002", Peer: "127.0.1.2:2303"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v (pid 770 is another process)", got, want)
	}
}
