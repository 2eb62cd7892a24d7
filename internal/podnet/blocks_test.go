package podnet

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func cfg(cidr string, bits int) Config {
	return Config{CIDR: netip.MustParsePrefix(cidr), BlockBits: bits}
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestNextFree(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		taken []netip.Prefix
		want  string
		err   error
	}{
		{"empty", cfg("100.96.0.0/16", 24), nil, "100.96.0.0/24", nil},
		{"lowest free", cfg("100.96.0.0/16", 24), prefixes("100.96.1.0/24", "100.96.0.0/24", "100.96.3.0/24"), "100.96.2.0/24", nil},
		{"overlapping other sizes", cfg("100.96.0.0/16", 24), prefixes("100.96.0.0/23"), "100.96.2.0/24", nil},
		{"outside entries ignored", cfg("100.96.0.0/16", 24), prefixes("10.0.0.0/24"), "100.96.0.0/24", nil},
		{"last block", cfg("100.96.0.0/23", 24), prefixes("100.96.0.0/24"), "100.96.1.0/24", nil},
		{"exhausted", cfg("100.96.0.0/23", 24), prefixes("100.96.0.0/24", "100.96.1.0/24"), "", ErrExhausted},
		{"one block network", cfg("100.96.7.0/24", 24), nil, "100.96.7.0/24", nil},
		{"top of the address space", cfg("255.255.255.0/24", 26), prefixes("255.255.255.0/25", "255.255.255.128/26"), "255.255.255.192/26", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NextFree(tc.cfg, tc.taken)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && got.String() != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{cfg("100.96.0.0/16", 24), true},
		{cfg("100.96.0.0/16", 30), true},
		{cfg("100.96.0.0/16", 31), false},
		{cfg("100.96.0.0/16", 15), false},
		{cfg("100.96.0.1/16", 24), false},
		{cfg("fd00::/64", 96), false},
		{Config{BlockBits: 24}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%v: Validate() = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func newBlocks(objs ...runtime.Object) (*Blocks, *fake.Clientset) {
	cs := fake.NewClientset(objs...)
	return &Blocks{ConfigMaps: cs.CoreV1().ConfigMaps("rbn-system"), Config: cfg("100.96.0.0/22", 24)}, cs
}

func TestBlocksAllocateKeepAndRelease(t *testing.T) {
	ctx := context.Background()
	b, cs := newBlocks()
	a1, err := b.Block(ctx, "a")
	if err != nil || a1.String() != "100.96.0.0/24" {
		t.Fatalf("a: %v %v", a1, err)
	}
	b1, err := b.Block(ctx, "b")
	if err != nil || b1.String() != "100.96.1.0/24" {
		t.Fatalf("b: %v %v", b1, err)
	}
	if again, err := b.Block(ctx, "a"); err != nil || again != a1 {
		t.Fatalf("a again: %v %v, want %v", again, err, a1)
	}
	if err := b.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx, "a"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	c1, err := b.Block(ctx, "c")
	if err != nil || c1 != a1 {
		t.Fatalf("c got %v %v, want the released %v", c1, err, a1)
	}
	cm, err := cs.CoreV1().ConfigMaps("rbn-system").Get(ctx, ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"b": "100.96.1.0/24", "c": "100.96.0.0/24"}; len(cm.Data) != 2 || cm.Data["b"] != want["b"] || cm.Data["c"] != want["c"] {
		t.Fatalf("ConfigMap data = %v, want %v", cm.Data, want)
	}
}

func TestBlocksReallocatesABlockOfAnotherConfiguration(t *testing.T) {
	b, _ := newBlocks(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "rbn-system"},
		Data:       map[string]string{"a": "10.1.0.0/24", "b": "100.96.0.0/24", "junk": "not a cidr"},
	})
	got, err := b.Block(context.Background(), "a")
	if err != nil || got.String() != "100.96.1.0/24" {
		t.Fatalf("got %v %v, want 100.96.1.0/24", got, err)
	}
}

func TestBlocksExhausted(t *testing.T) {
	b, _ := newBlocks(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "rbn-system"},
		Data:       map[string]string{"a": "100.96.0.0/23", "b": "100.96.2.0/23"},
	})
	if _, err := b.Block(context.Background(), "c"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v, want ErrExhausted", err)
	}
}

// Another replica's write lands between this one's read and write: the
// update conflicts, and the allocation starts over from the new object, so
// the two nodes get different blocks.
func TestBlocksConcurrentWriterNeverSharesABlock(t *testing.T) {
	ctx := context.Background()
	b, cs := newBlocks(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "rbn-system", ResourceVersion: "1"},
		Data:       map[string]string{},
	})
	raced := false
	cs.PrependReactor("update", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		// The other replica's write: node "other" takes the lowest block.
		other := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "rbn-system", ResourceVersion: "2"},
			Data:       map[string]string{"other": "100.96.0.0/24"},
		}
		if err := cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("configmaps"), other, "rbn-system"); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewConflict(corev1.Resource("configmaps"), ConfigMapName, errors.New("resourceVersion changed"))
	})
	got, err := b.Block(ctx, "mine")
	if err != nil {
		t.Fatal(err)
	}
	if !raced || got.String() != "100.96.1.0/24" {
		t.Fatalf("raced=%v got %s, want 100.96.1.0/24 after the conflict", raced, got)
	}
}

// Two replicas create the ConfigMap at once: the loser starts over from
// the winner's object.
func TestBlocksConcurrentCreate(t *testing.T) {
	ctx := context.Background()
	b, cs := newBlocks()
	raced := false
	cs.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if raced {
			return false, nil, nil
		}
		raced = true
		other := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: "rbn-system"},
			Data:       map[string]string{"other": "100.96.0.0/24"},
		}
		if err := cs.Tracker().Create(corev1.SchemeGroupVersion.WithResource("configmaps"), other, "rbn-system"); err != nil {
			t.Fatal(err)
		}
		return true, nil, apierrors.NewAlreadyExists(corev1.Resource("configmaps"), ConfigMapName)
	})
	got, err := b.Block(ctx, "mine")
	if err != nil || got.String() != "100.96.1.0/24" {
		t.Fatalf("got %v %v, want 100.96.1.0/24", got, err)
	}
}
