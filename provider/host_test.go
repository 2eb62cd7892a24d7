package provider

import (
	"strings"
	"testing"
)

func TestParseMemAvailable(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"kB", "MemTotal:       24686024 kB\nMemFree:          512000 kB\nMemAvailable:   20000000 kB\n", 20000000 * 1024, false},
		{"no unit", "MemAvailable: 4096\n", 4096, false},
		{"old kernel", "MemTotal: 1 kB\nMemFree: 1 kB\n", 0, true},
		{"garbage", "MemAvailable: lots kB\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemAvailable([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseMemAvailable = %d, %v; want %d (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseProcFacts(t *testing.T) {
	const boot = "800586f6-3897-4310-b88b-13b3aad556be"
	for _, tc := range []struct {
		name, in string
		boot     string
		avail    int64
		wantErr  string
	}{
		{"both", boot + "\nMemTotal: 2 kB\nMemAvailable: 1 kB\n", boot, 1024, ""},
		{"no boot id", "MemTotal: 2 kB\nMemAvailable: 1 kB\n", "", 0, "is not a boot id"},
		{"old kernel", boot + "\nMemTotal: 2 kB\n", boot, 0, "no MemAvailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, avail, err := parseProcFacts([]byte(tc.in))
			if b != tc.boot || avail != tc.avail || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseProcFacts = %q, %d, %v; want %q, %d, error %q", b, avail, err, tc.boot, tc.avail, tc.wantErr)
			}
		})
	}
}

func TestParseStatfsAvailable(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     uint64
		wantErr  string
	}{
		{"4k blocks", "4096 250000\n", 4096 * 250000, ""},
		{"none left to users", "4096 0\n", 0, ""},
		{"one field", "4096\n", 0, "is not a block size and a block count"},
		{"zero block size", "0 10\n", 0, "block size"},
		{"garbage", "4096 lots\n", 0, "available blocks"},
		{"overflow", "4096 18446744073709551615\n", 0, "overflow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatfsAvailable([]byte(tc.in))
			if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseStatfsAvailable = %d, %v; want %d, error %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
