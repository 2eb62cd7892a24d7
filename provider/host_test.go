package provider

import "testing"

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
