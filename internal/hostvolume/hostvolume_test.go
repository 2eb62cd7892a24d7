package hostvolume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// fakeHost is a Runner simulating the part of a host's state the package
// looks at: which paths exist, how many file systems are mounted on each
// directory, and what stat -f and find print. It records every argv.
type fakeHost struct {
	t *testing.T
	// paths that exist.
	paths map[string]bool
	// mounts counts the file systems stacked on a directory.
	mounts map[string]int
	// statOut and findOut are what stat -f and find print.
	statOut, findOut string
	// fail, when it returns an error for an argv, makes the command fail
	// with it before it does anything.
	fail func(argv []string) error
	// stuck directories' umounts succeed but leave the mount in place.
	stuck map[string]bool
	calls [][]string
}

func newFakeHost(t *testing.T) *fakeHost {
	return &fakeHost{t: t, paths: map[string]bool{"/": true}, mounts: map[string]int{}, stuck: map[string]bool{}}
}

func exitErr(status int, stderr string, argv []string) error {
	return &sshconn.ExitError{Argv: slices.Clone(argv), Status: status, Stderr: stderr}
}

// operands returns what follows "--" in argv, and fails the test when the
// command has none: every path the package passes follows "--".
func (h *fakeHost) operands(argv []string) []string {
	i := slices.Index(argv, "--")
	if i < 0 {
		h.t.Errorf("%q: no -- before its operands", argv)
		return nil
	}
	return argv[i+1:]
}

func (h *fakeHost) mkdirAll(p string) {
	for ; p != "/" && p != "." && p != ""; p = parentDir(p) {
		h.paths[p] = true
	}
}

func parentDir(p string) string {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func (h *fakeHost) Output(ctx context.Context, argv ...string) ([]byte, error) {
	if ctx == nil {
		h.t.Errorf("%q: nil context", argv)
	}
	h.calls = append(h.calls, slices.Clone(argv))
	if h.fail != nil {
		if err := h.fail(argv); err != nil {
			return nil, err
		}
	}
	if len(argv) == 0 {
		h.t.Fatalf("empty argv")
	}
	switch argv[0] {
	case "test":
		if len(argv) != 3 || argv[1] != "-e" {
			break
		}
		if h.paths[argv[2]] {
			return nil, nil
		}
		return nil, exitErr(1, "", argv)
	case "findmnt":
		want := []string{"findmnt", "--noheadings", "--output", "TARGET", "--mountpoint"}
		if len(argv) != 6 || !slices.Equal(argv[:5], want) {
			break
		}
		if h.mounts[argv[5]] > 0 {
			return []byte(argv[5] + "\n"), nil
		}
		return nil, exitErr(1, "", argv)
	case "mkdir":
		if argv[1] != "-p" {
			break
		}
		for _, p := range h.operands(argv) {
			h.mkdirAll(p)
		}
		return nil, nil
	case "install":
		if !slices.Equal(argv[1:4], []string{"-d", "-m", "0777"}) {
			break
		}
		for _, p := range h.operands(argv) {
			h.mkdirAll(p)
		}
		return nil, nil
	case "truncate":
		ops := h.operands(argv)
		if argv[1] != "-s" || len(ops) != 1 {
			break
		}
		if !h.paths[parentDir(ops[0])] {
			return nil, exitErr(1, "truncate: No such file or directory", argv)
		}
		h.paths[ops[0]] = true
		return nil, nil
	case "mkfs.ext4":
		ops := h.operands(argv)
		if len(ops) != 1 {
			break
		}
		if !h.paths[ops[0]] {
			return nil, exitErr(1, "mkfs.ext4: No such file or directory", argv)
		}
		return nil, nil
	case "mv":
		ops := h.operands(argv)
		if argv[1] != "-T" || len(ops) != 2 {
			break
		}
		if !h.paths[ops[0]] {
			return nil, exitErr(1, "mv: No such file or directory", argv)
		}
		delete(h.paths, ops[0])
		h.paths[ops[1]] = true
		return nil, nil
	case "mount":
		ops := h.operands(argv)
		if len(ops) != 2 {
			break
		}
		if !h.paths[ops[0]] || !h.paths[ops[1]] {
			return nil, exitErr(32, "mount: special device or mount point does not exist", argv)
		}
		h.mounts[ops[1]]++
		return nil, nil
	case "umount":
		ops := h.operands(argv)
		if len(ops) != 1 {
			break
		}
		if h.mounts[ops[0]] == 0 {
			return nil, exitErr(32, "umount: not mounted", argv)
		}
		if !h.stuck[ops[0]] {
			h.mounts[ops[0]]--
		}
		return nil, nil
	case "rm":
		for _, p := range h.operands(argv) {
			if h.mounts[p] > 0 {
				// The fake refuses: Remove must unmount first.
				return nil, exitErr(1, "rm: "+p+" is still mounted (fake host)", argv)
			}
			for q := range h.paths {
				if q == p || strings.HasPrefix(q, p+"/") {
					delete(h.paths, q)
				}
			}
		}
		return nil, nil
	case "stat":
		return []byte(h.statOut), nil
	case "find":
		return []byte(h.findOut), nil
	}
	h.t.Errorf("unexpected command %q", argv)
	return nil, exitErr(127, "unexpected command", argv)
}

// failOn makes the commands named name fail with exit status status.
func failOn(name string, status int, stderr string) func([]string) error {
	return func(argv []string) error {
		if argv[0] == name {
			return exitErr(status, stderr, argv)
		}
		return nil
	}
}

func (h *fakeHost) ran(name string) int {
	n := 0
	for _, c := range h.calls {
		if c[0] == name {
			n++
		}
	}
	return n
}

func checkCalls(t *testing.T, got, want [][]string) {
	t.Helper()
	if !slices.EqualFunc(got, want, slices.Equal[[]string]) {
		var b strings.Builder
		fmt.Fprintf(&b, "commands:\n")
		for _, c := range got {
			fmt.Fprintf(&b, "  got  %q\n", c)
		}
		for _, c := range want {
			fmt.Fprintf(&b, "  want %q\n", c)
		}
		t.Error(b.String())
	}
}

func argv(s ...string) []string { return s }

const root = "/var/lib/rbn/volumes"

var (
	loopVol  = Layout(root, "pvc-1", rbnv1.VolumeSizeLimitLoopFile)
	plainVol = Layout(root, "pvc-2", rbnv1.VolumeSizeLimitNone)
)

func findmntArgv(dir string) []string {
	return argv("findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", dir)
}

func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		root, name string
		limit      rbnv1.VolumeSizeLimit
		want       Volume
		data       string
	}{
		{root, "pvc-1", rbnv1.VolumeSizeLimitLoopFile,
			Volume{Dir: root + "/pvc-1", Image: root + "/pvc-1.img"}, root + "/pvc-1/data"},
		{root, "pvc-2", rbnv1.VolumeSizeLimitNone,
			Volume{Dir: root + "/pvc-2"}, root + "/pvc-2/data"},
		{"/srv/vols/", "v", rbnv1.VolumeSizeLimitLoopFile,
			Volume{Dir: "/srv/vols/v", Image: "/srv/vols/v.img"}, "/srv/vols/v/data"},
		{"/srv/vols", "v", rbnv1.VolumeSizeLimitNone,
			Volume{Dir: "/srv/vols/v"}, "/srv/vols/v/data"},
	} {
		t.Run(string(tc.limit)+"/"+tc.root, func(t *testing.T) {
			got := Layout(tc.root, tc.name, tc.limit)
			if got != tc.want {
				t.Errorf("Layout(%q, %q, %q) = %+v, want %+v", tc.root, tc.name, tc.limit, got, tc.want)
			}
			if d := got.Data(); d != tc.data {
				t.Errorf("Data() = %q, want %q", d, tc.data)
			}
		})
	}
}

func createArgv(v Volume, size int64) [][]string {
	tmp := strings.TrimSuffix(v.Image, ".img") + ".img.tmp"
	return [][]string{
		argv("test", "-e", v.Image),
		argv("mkdir", "-p", "--", root),
		argv("truncate", "-s", strconv.FormatInt(size, 10), "--", tmp),
		argv("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", "--", tmp),
		argv("mv", "-T", "--", tmp, v.Image),
		findmntArgv(v.Dir),
		argv("test", "-e", v.Image),
		argv("mkdir", "-p", "--", v.Dir),
		argv("mount", "-o", "loop,nodev,nosuid", "--", v.Image, v.Dir),
		argv("install", "-d", "-m", "0777", "--", v.Data()),
	}
}

func TestCreateLoopFromNothing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size, want int64
	}{
		{"large", 300 << 30, 300 << 30},
		{"exactly the minimum", MinImageSize, MinImageSize},
		{"below the minimum", 1 << 20, MinImageSize},
		{"one byte", 1, MinImageSize},
		{"zero", 0, MinImageSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			if err := Create(t.Context(), h, loopVol, tc.size); err != nil {
				t.Fatalf("Create: %v", err)
			}
			checkCalls(t, h.calls, createArgv(loopVol, tc.want))
			if !h.paths[loopVol.Image] || h.paths[root+"/pvc-1.img.tmp"] {
				t.Errorf("image %v, tmp %v after Create; want the image only", h.paths[loopVol.Image], h.paths[root+"/pvc-1.img.tmp"])
			}
			if h.mounts[loopVol.Dir] != 1 {
				t.Errorf("%d mounts on %s, want 1", h.mounts[loopVol.Dir], loopVol.Dir)
			}
			if !h.paths[loopVol.Data()] {
				t.Errorf("no %s after Create", loopVol.Data())
			}
		})
	}
}

func TestCreateIdempotent(t *testing.T) {
	h := newFakeHost(t)
	if err := Create(t.Context(), h, loopVol, 1<<30); err != nil {
		t.Fatalf("first Create: %v", err)
	}
	h.calls = nil
	if err := Create(t.Context(), h, loopVol, 1<<30); err != nil {
		t.Fatalf("second Create: %v", err)
	}
	checkCalls(t, h.calls, [][]string{
		argv("test", "-e", loopVol.Image),
		findmntArgv(loopVol.Dir),
		argv("install", "-d", "-m", "0777", "--", loopVol.Data()),
	})
	if h.mounts[loopVol.Dir] != 1 {
		t.Errorf("%d mounts on %s, want 1", h.mounts[loopVol.Dir], loopVol.Dir)
	}
}

// An image already made but not mounted (a host rebooted, or a Create cut
// short after mv) is mounted, not made again.
func TestCreateImageExistsNotMounted(t *testing.T) {
	h := newFakeHost(t)
	h.mkdirAll(loopVol.Image)
	if err := Create(t.Context(), h, loopVol, 1<<30); err != nil {
		t.Fatalf("Create: %v", err)
	}
	checkCalls(t, h.calls, [][]string{
		argv("test", "-e", loopVol.Image),
		findmntArgv(loopVol.Dir),
		argv("test", "-e", loopVol.Image),
		argv("mkdir", "-p", "--", loopVol.Dir),
		argv("mount", "-o", "loop,nodev,nosuid", "--", loopVol.Image, loopVol.Dir),
		argv("install", "-d", "-m", "0777", "--", loopVol.Data()),
	})
}

// A Create that fails part way returns an *Error carrying the command's
// *sshconn.ExitError, runs nothing after the failure, and the next Create
// finishes the volume.
func TestCreateFailsThenResumes(t *testing.T) {
	for _, step := range []string{"mkdir", "truncate", "mkfs.ext4", "mv", "mount", "install"} {
		t.Run(step, func(t *testing.T) {
			h := newFakeHost(t)
			h.fail = failOn(step, 1, step+": No space left on device")
			err := Create(t.Context(), h, loopVol, 1<<30)
			var herr *Error
			if !errors.As(err, &herr) {
				t.Fatalf("Create: %v (%T), want an *Error", err, err)
			}
			if herr.Op != step && !strings.HasPrefix(herr.Op, step+" ") {
				t.Errorf("Error.Op = %q, want %q", herr.Op, step)
			}
			var exit *sshconn.ExitError
			if !errors.As(err, &exit) || exit.Argv[0] != step {
				t.Errorf("Create: %v, want it to wrap %s's *sshconn.ExitError", err, step)
			}
			if !strings.Contains(err.Error(), "No space left on device") {
				t.Errorf("error %q does not say what the host said", err)
			}
			if last := h.calls[len(h.calls)-1]; last[0] != step {
				t.Errorf("ran %q after %s failed", last, step)
			}
			if h.mounts[loopVol.Dir] > 0 && step != "install" {
				t.Errorf("mounted although %s failed", step)
			}

			h.fail = nil
			if err := Create(t.Context(), h, loopVol, 1<<30); err != nil {
				t.Fatalf("Create after the failure: %v", err)
			}
			if !h.paths[loopVol.Image] || !h.paths[loopVol.Data()] || h.mounts[loopVol.Dir] != 1 {
				t.Errorf("after a second Create: image %v, data %v, %d mounts; want a mounted volume",
					h.paths[loopVol.Image], h.paths[loopVol.Data()], h.mounts[loopVol.Dir])
			}
		})
	}
}

func TestCreatePlain(t *testing.T) {
	for _, size := range []int64{0, 1, 300 << 30} {
		h := newFakeHost(t)
		if err := Create(t.Context(), h, plainVol, size); err != nil {
			t.Fatalf("Create(%d): %v", size, err)
		}
		checkCalls(t, h.calls, [][]string{argv("install", "-d", "-m", "0777", "--", plainVol.Data())})
	}
}

func TestEnsureMounted(t *testing.T) {
	mountArgv := argv("mount", "-o", "loop,nodev,nosuid", "--", loopVol.Image, loopVol.Dir)
	for _, tc := range []struct {
		name      string
		v         Volume
		image     bool
		mounts    int
		fail      func([]string) error
		wantCalls [][]string
		wantErr   string // "" for none
		mounted   int
	}{
		{
			name: "not mounted", v: loopVol, image: true,
			wantCalls: [][]string{
				findmntArgv(loopVol.Dir),
				argv("test", "-e", loopVol.Image),
				argv("mkdir", "-p", "--", loopVol.Dir),
				mountArgv,
			},
			mounted: 1,
		},
		{
			name: "mounted", v: loopVol, image: true, mounts: 1,
			wantCalls: [][]string{findmntArgv(loopVol.Dir)},
			mounted:   1,
		},
		{
			name: "image missing", v: loopVol,
			wantCalls: [][]string{
				findmntArgv(loopVol.Dir),
				argv("test", "-e", loopVol.Image),
			},
			wantErr: "the volume's file system " + loopVol.Image + " is missing",
		},
		{
			name: "findmnt fails", v: loopVol, image: true,
			fail:      failOn("findmnt", 2, "findmnt: cannot read /proc/self/mountinfo"),
			wantCalls: [][]string{findmntArgv(loopVol.Dir)},
			wantErr:   "cannot read /proc/self/mountinfo",
		},
		{
			name: "test fails", v: loopVol, image: true,
			fail:      failOn("test", 2, "test: extra argument"),
			wantCalls: [][]string{findmntArgv(loopVol.Dir), argv("test", "-e", loopVol.Image)},
			wantErr:   "test: extra argument",
		},
		{
			name: "host unreachable", v: loopVol, image: true,
			fail:      func([]string) error { return errors.New("ssh: connection lost") },
			wantCalls: [][]string{findmntArgv(loopVol.Dir)},
			wantErr:   "ssh: connection lost",
		},
		{
			name: "mount fails", v: loopVol, image: true,
			fail: failOn("mount", 32, "mount: wrong fs type"),
			wantCalls: [][]string{
				findmntArgv(loopVol.Dir),
				argv("test", "-e", loopVol.Image),
				argv("mkdir", "-p", "--", loopVol.Dir),
				mountArgv,
			},
			wantErr: "mount: wrong fs type",
		},
		{
			name: "mkdir fails", v: loopVol, image: true,
			fail: failOn("mkdir", 1, "mkdir: Read-only file system"),
			wantCalls: [][]string{
				findmntArgv(loopVol.Dir),
				argv("test", "-e", loopVol.Image),
				argv("mkdir", "-p", "--", loopVol.Dir),
			},
			wantErr: "mkdir: Read-only file system",
		},
		{
			name: "plain directory", v: plainVol,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			if tc.image {
				h.mkdirAll(tc.v.Image)
			}
			h.mounts[tc.v.Dir] = tc.mounts
			h.fail = tc.fail
			err := EnsureMounted(t.Context(), h, tc.v)
			checkCalls(t, h.calls, tc.wantCalls)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("EnsureMounted: %v", err)
				}
			} else {
				var herr *Error
				if !errors.As(err, &herr) {
					t.Fatalf("EnsureMounted: %v (%T), want an *Error", err, err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("EnsureMounted: %q, want it to say %q", err, tc.wantErr)
				}
			}
			if h.mounts[tc.v.Dir] != tc.mounted {
				t.Errorf("%d mounts on %s, want %d", h.mounts[tc.v.Dir], tc.v.Dir, tc.mounted)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	umountArgv := argv("umount", "--", loopVol.Dir)
	rmLoop := argv("rm", "-rf", "--one-file-system", "--", loopVol.Dir, loopVol.Image, root+"/pvc-1.img.tmp")
	for _, tc := range []struct {
		name      string
		v         Volume
		mounts    int
		stuck     bool
		fail      func([]string) error
		wantCalls [][]string
		wantErr   string
	}{
		{
			name: "mounted", v: loopVol, mounts: 1,
			wantCalls: [][]string{findmntArgv(loopVol.Dir), umountArgv, findmntArgv(loopVol.Dir), rmLoop},
		},
		{
			name: "not mounted", v: loopVol,
			wantCalls: [][]string{findmntArgv(loopVol.Dir), rmLoop},
		},
		{
			name: "stacked mounts", v: loopVol, mounts: 3,
			wantCalls: [][]string{
				findmntArgv(loopVol.Dir), umountArgv,
				findmntArgv(loopVol.Dir), umountArgv,
				findmntArgv(loopVol.Dir), umountArgv,
				findmntArgv(loopVol.Dir), rmLoop,
			},
		},
		{
			name: "maxUnmounts stacked mounts", v: loopVol, mounts: maxUnmounts,
			wantCalls: slices.Concat(
				slices.Repeat([][]string{findmntArgv(loopVol.Dir), umountArgv}, maxUnmounts),
				[][]string{findmntArgv(loopVol.Dir), rmLoop},
			),
		},
		{
			name: "more mounts than maxUnmounts", v: loopVol, mounts: maxUnmounts + 1,
			wantCalls: slices.Concat(
				slices.Repeat([][]string{findmntArgv(loopVol.Dir), umountArgv}, maxUnmounts),
				[][]string{findmntArgv(loopVol.Dir)},
			),
			wantErr: fmt.Sprintf("still mounted after %d unmounts", maxUnmounts),
		},
		{
			name: "umount does not unmount", v: loopVol, mounts: 1, stuck: true,
			wantCalls: slices.Concat(
				slices.Repeat([][]string{findmntArgv(loopVol.Dir), umountArgv}, maxUnmounts),
				[][]string{findmntArgv(loopVol.Dir)},
			),
			wantErr: fmt.Sprintf("still mounted after %d unmounts", maxUnmounts),
		},
		{
			name: "busy", v: loopVol, mounts: 1,
			fail:      failOn("umount", 32, "umount: target is busy."),
			wantCalls: [][]string{findmntArgv(loopVol.Dir), umountArgv},
			wantErr:   "target is busy",
		},
		{
			name: "findmnt fails", v: loopVol, mounts: 1,
			fail:      failOn("findmnt", 2, "findmnt: out of memory"),
			wantCalls: [][]string{findmntArgv(loopVol.Dir)},
			wantErr:   "findmnt: out of memory",
		},
		{
			name: "rm fails", v: loopVol,
			fail:      failOn("rm", 1, "rm: Read-only file system"),
			wantCalls: [][]string{findmntArgv(loopVol.Dir), rmLoop},
			wantErr:   "Read-only file system",
		},
		{
			name: "plain directory", v: plainVol,
			wantCalls: [][]string{argv("rm", "-rf", "--one-file-system", "--", plainVol.Dir)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.mkdirAll(tc.v.Data())
			if tc.v.Image != "" {
				h.mkdirAll(tc.v.Image)
			}
			h.mounts[tc.v.Dir] = tc.mounts
			h.stuck[tc.v.Dir] = tc.stuck
			h.fail = tc.fail
			err := Remove(t.Context(), h, tc.v)
			checkCalls(t, h.calls, tc.wantCalls)
			if tc.wantErr != "" {
				var herr *Error
				if !errors.As(err, &herr) {
					t.Fatalf("Remove: %v (%T), want an *Error", err, err)
				}
				if herr.Path != tc.v.Dir {
					t.Errorf("Error.Path = %q, want %q", herr.Path, tc.v.Dir)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Remove: %q, want it to say %q", err, tc.wantErr)
				}
				if tc.fail == nil || tc.fail([]string{"rm"}) == nil {
					if !h.paths[tc.v.Data()] {
						t.Errorf("the volume's data was removed although Remove failed")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if h.paths[tc.v.Dir] || (tc.v.Image != "" && h.paths[tc.v.Image]) {
				t.Errorf("the volume is still there after Remove")
			}
			if !h.paths[root] {
				t.Errorf("Remove removed the root")
			}
		})
	}
}

// Remove of a volume already gone, or removed twice, is no error.
func TestRemoveTwice(t *testing.T) {
	h := newFakeHost(t)
	if err := Create(t.Context(), h, loopVol, 1<<30); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for i := range 2 {
		if err := Remove(t.Context(), h, loopVol); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if h.ran("rm") != 2 || h.ran("umount") != 1 {
		t.Errorf("ran rm %d and umount %d times, want 2 and 1", h.ran("rm"), h.ran("umount"))
	}
	for p := range h.paths {
		if strings.HasPrefix(p, loopVol.Dir) {
			t.Errorf("%s is left", p)
		}
	}
}

func TestReadSpace(t *testing.T) {
	const gib = 1 << 30
	wantArgv := [][]string{
		argv("mkdir", "-p", "--", root),
		argv("stat", "-f", "-c", "%b %a %S", "--", root),
		argv("find", root, "-mindepth", "1", "-maxdepth", "1", "-type", "f",
			"(", "-name", "*.img", "-o", "-name", "*.img.tmp", ")", "-printf", `%s %b %f\n`),
	}
	for _, tc := range []struct {
		name            string
		statOut         string
		findOut         string
		except          string
		fail            func([]string) error
		want            Space
		wantFree        int64
		wantErr         string
		wantOp          string
		wantCalls       int
		wantExitErrWrap bool
	}{
		{
			name:    "no volumes",
			statOut: "2000 1000 4096\n",
			want:    Space{Total: 8192000, Available: 4096000}, wantFree: 4096000,
			wantCalls: 3,
		},
		{
			name:    "volumes",
			statOut: "52428800 26214400 4096\n", // 100 GiB of 200
			// A 10 GiB image holding 1 GiB; a 16 MiB image holding
			// nothing; a tmp image of 2 GiB holding 2 GiB.
			findOut: fmt.Sprintf("%d %d a.img\n%d 0 b c.img\n%d %d d.img.tmp\n", 10*gib, gib/512, MinImageSize, 2*gib, 2*gib/512),
			want: Space{Total: 200 * gib, Available: 100 * gib, Promised: 9*gib + MinImageSize,
				Volumes: 3, Size: 12*gib + MinImageSize, Used: 3 * gib},
			wantFree: 100*gib - 9*gib - MinImageSize, wantCalls: 3,
		},
		{
			name:     "file holding more than its size",
			statOut:  "20 10 512",
			findOut:  "100 8 a.img\n4096 4 b.img", // no final newline
			want:     Space{Total: 10240, Available: 5120, Promised: 4096 - 2048, Volumes: 2, Size: 4196, Used: 6144},
			wantFree: 5120 - 2048, wantCalls: 3,
		},
		{
			name:     "promised beyond available",
			statOut:  "1 1 4096\n",
			findOut:  fmt.Sprintf("%d 0 a.img\n", gib),
			want:     Space{Total: 4096, Available: 4096, Promised: gib, Volumes: 1, Size: gib},
			wantFree: 4096 - gib, wantCalls: 3,
		},
		{
			name:      "the volume being made is not counted",
			statOut:   "1000 1000 4096\n",
			except:    "pv-1",
			findOut:   fmt.Sprintf("%d 0 pv-1.img\n%d 0 pv-1.img.tmp\n%d 0 pv-10.img\n", gib, gib, MinImageSize),
			want:      Space{Total: 4096000, Available: 4096000, Promised: MinImageSize, Volumes: 1, Size: MinImageSize},
			wantFree:  4096000 - MinImageSize,
			wantCalls: 3,
		},
		{
			name: "stat prints two fields", statOut: "1000 4096\n",
			wantErr: "unexpected output", wantOp: "stat -f", wantCalls: 2,
		},
		{
			name: "stat prints four fields", statOut: "1 2 3 4\n",
			wantErr: "unexpected output", wantOp: "stat -f", wantCalls: 2,
		},
		{
			name: "stat prints words", statOut: "lots 1000 4096\n",
			wantErr: "unexpected output", wantOp: "stat -f", wantCalls: 2,
		},
		{
			name: "stat prints a bad block size", statOut: "2000 1000 4k\n",
			wantErr: "unexpected output", wantOp: "stat -f", wantCalls: 2,
		},
		{
			name: "stat prints nothing", statOut: "",
			wantErr: "unexpected output", wantOp: "stat -f", wantCalls: 2,
		},
		{
			name: "find prints a bad line", statOut: "2000 1000 4096\n", findOut: "100 8 a.img\n12\n",
			wantErr: "unexpected output", wantOp: "find", wantCalls: 3,
		},
		{
			name: "find prints a blank line", statOut: "2000 1000 4096\n", findOut: "100 8 a.img\n\n200 0 b.img\n",
			wantErr: "unexpected output", wantOp: "find", wantCalls: 3,
		},
		{
			name: "find prints a bad size", statOut: "2000 1000 4096\n", findOut: "1e9 8 a.img\n",
			wantErr: "unexpected output", wantOp: "find", wantCalls: 3,
		},
		{
			name: "mkdir fails", fail: failOn("mkdir", 1, "mkdir: Permission denied"),
			wantErr: "Permission denied", wantOp: "mkdir", wantCalls: 1, wantExitErrWrap: true,
		},
		{
			name: "stat fails", fail: failOn("stat", 1, "stat: Input/output error"),
			wantErr: "Input/output error", wantOp: "stat -f", wantCalls: 2, wantExitErrWrap: true,
		},
		{
			name: "find fails", statOut: "2000 1000 4096\n", fail: failOn("find", 1, "find: Permission denied"),
			wantErr: "Permission denied", wantOp: "find", wantCalls: 3, wantExitErrWrap: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.statOut, h.findOut, h.fail = tc.statOut, tc.findOut, tc.fail
			got, err := ReadSpace(t.Context(), h, root, tc.except)
			checkCalls(t, h.calls, wantArgv[:tc.wantCalls])
			if tc.wantErr != "" {
				var herr *Error
				if !errors.As(err, &herr) {
					t.Fatalf("ReadSpace: %v (%T), want an *Error", err, err)
				}
				if herr.Op != tc.wantOp || herr.Path != root {
					t.Errorf("Error op %q path %q, want %q %q", herr.Op, herr.Path, tc.wantOp, root)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ReadSpace: %q, want it to say %q", err, tc.wantErr)
				}
				var exit *sshconn.ExitError
				if errors.As(err, &exit) != tc.wantExitErrWrap {
					t.Errorf("ReadSpace: %v: wraps an *sshconn.ExitError: %v, want %v", err, !tc.wantExitErrWrap, tc.wantExitErrWrap)
				}
				if got != (Space{}) {
					t.Errorf("ReadSpace returned %+v with its error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadSpace: %v", err)
			}
			if got != tc.want {
				t.Errorf("ReadSpace = %+v, want %+v", got, tc.want)
			}
			if f := got.Free(); f != tc.wantFree {
				t.Errorf("Free() = %d, want %d", f, tc.wantFree)
			}
			if !h.paths[root] {
				t.Errorf("ReadSpace did not make the root")
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	exit := &sshconn.ExitError{Argv: []string{"umount", "--", "/v"}, Status: 32, Stderr: "target is busy\n"}
	err := error(&Error{Op: "umount", Path: "/v", Err: exit})
	if got, want := err.Error(), "umount /v on the host: umount -- /v: exit status 32: target is busy"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, exit) {
		t.Errorf("errors.Is(%v, its ExitError) = false", err)
	}
}

func TestList(t *testing.T) {
	at := func(sec float64) time.Time { return time.Unix(0, int64(sec*float64(time.Second))) }
	for _, tc := range []struct {
		name, findOut string
		want          []Entry
		wantErr       string
	}{
		{name: "empty"},
		{
			name: "volumes with and without their files",
			// pv-b's directory is newer than its file; pv-c is a file
			// system half made; pv-a a plain directory.
			findOut: "1700000000.5 pv-b.img\n1700000100.25 pv-b\n1600000000 pv-a\n1700000200 pv-c.img.tmp\n",
			want: []Entry{
				{Name: "pv-a", Modified: at(1600000000)},
				{Name: "pv-b", Image: true, Modified: at(1700000100.25)},
				{Name: "pv-c", Image: true, Modified: at(1700000200)},
			},
		},
		{name: "a name with a space", findOut: "1 a b\n", want: []Entry{{Name: "a b", Modified: at(1)}}},
		{name: "no time", findOut: "pv-a\n", wantErr: "unexpected output"},
		{name: "bad time", findOut: "yesterday pv-a\n", wantErr: "unexpected output"},
		{name: "no name", findOut: "1 \n", wantErr: "unexpected output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.findOut = tc.findOut
			got, err := List(t.Context(), h, root)
			checkCalls(t, h.calls, [][]string{argv("find", root, "-mindepth", "1", "-maxdepth", "1", "-printf", `%T@ %f\n`)})
			if tc.wantErr != "" {
				var herr *Error
				if !errors.As(err, &herr) || herr.Op != "find" || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("List: %v, want a find *Error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// An entry is its volume: with its file system file when it has one.
	if v := (Entry{Name: "pv-b", Image: true}).Volume(root); v != (Volume{Dir: root + "/pv-b", Image: root + "/pv-b.img"}) {
		t.Errorf("Volume of a loop entry: %+v", v)
	}
	if v := (Entry{Name: "pv-a"}).Volume(root); v != (Volume{Dir: root + "/pv-a"}) {
		t.Errorf("Volume of a plain entry: %+v", v)
	}
}
