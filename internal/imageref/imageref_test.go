package imageref

import "testing"

func TestNormalize(t *testing.T) {
	const digest = "sha256:9ae97d36d26566ff84e8893c64a6dc4fe8ca6d1144bf5b87b2b85a32def253c7"
	tests := []struct {
		image, want string
		wantErr     bool
	}{
		{image: "busybox", want: "docker.io/library/busybox:latest"},
		{image: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{image: "alpine/git:2.45.2", want: "docker.io/alpine/git:2.45.2"},
		{image: "quay.io/podman/stable", want: "quay.io/podman/stable:latest"},
		{image: "localhost/built-here:dev", want: "localhost/built-here:dev"},
		{image: "localhost:5000/x", want: "localhost:5000/x:latest"},
		{image: "busybox@" + digest, want: "docker.io/library/busybox@" + digest},
		{image: "busybox:1.36@" + digest, want: "docker.io/library/busybox@" + digest},
		{image: "UPPER/case", want: "UPPER/case:latest"}, // an upper-case first component is a registry host
		{image: "BusyBox", wantErr: true},
		{image: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			got, err := Normalize(tt.image)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("Normalize(%q) = %q, %v; want %q, error %v", tt.image, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
