package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func dur(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

// The defaults, spelled out: a changed default tag fails here.
func TestDefaults(t *testing.T) {
	zero, two, yes := resource.MustParse("0"), int32(2), true
	for _, tc := range []struct {
		got, want Object
	}{
		{&KubeletConfiguration{}, &KubeletConfiguration{
			TypeMeta:   metav1.TypeMeta{APIVersion: APIVersion, Kind: KubeletKind},
			KubeAPIQPS: 50, KubeAPIBurst: 100, EventRecordQPS: 50, EventBurst: 100,
			ClusterDomain: "cluster.local", ListenAddress: "0.0.0.0", KubeletPort: 10250, MetricsBindAddress: "0.0.0.0:10265",
			NodeIdentities: &yes, NodeLeaseDurationSeconds: 40, NodeStatusReportFrequency: dur(time.Minute),
			HealthCheckInterval: dur(10 * time.Second), HostInfoRefreshInterval: dur(30 * time.Second),
			SSH: SSHConfiguration{DialTimeout: dur(10 * time.Second), KeepaliveInterval: dur(10 * time.Second),
				KeepaliveTimeout: dur(15 * time.Second), MaxBackoff: dur(30 * time.Second)},
			Podman: PodmanConfiguration{RequestTimeout: dur(2 * time.Minute), ImagePullTimeout: dur(time.Hour), ImagePullProgressDeadline: dur(time.Minute)},
			PodRetry: PodRetryConfiguration{SyncFailure: dur(5 * time.Second), ConfigError: dur(10 * time.Second),
				CreateFailure: dur(10 * time.Second), EventsReopen: dur(2 * time.Second), Teardown: dur(5 * time.Second),
				Resync: dur(10 * time.Second)},
			Sharding: ShardingConfiguration{LeaseDuration: dur(10 * time.Second), RenewDeadline: dur(7 * time.Second),
				RenewInterval: dur(3 * time.Second), RetryPeriod: dur(time.Second), KubeAPIQPS: 100, KubeAPIBurst: 200},
			PodNetwork:      PodNetworkConfiguration{BlockSize: 24},
			ClusterServices: ClusterServicesConfiguration{ForwarderDir: "/usr/local/lib/rbn"},
			LogFormat:       "text", LogLevel: "info",
		}},
		{&ExtenderConfiguration{}, &ExtenderConfiguration{
			TypeMeta:      metav1.TypeMeta{APIVersion: APIVersion, Kind: ExtenderKind},
			ListenAddress: "0.0.0.0", Port: 10262, MetricsBindAddress: "0.0.0.0:10266", FactsMaxAge: dur(2 * time.Minute),
			DefaultImageSize: &zero, LoadTolerance: &two, LogFormat: "text", LogLevel: "info",
		}},
	} {
		SetDefaults(tc.got)
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("defaults:\n got %+v\nwant %+v", tc.got, tc.want)
		}
	}
}

// Set values, 0 behind a pointer included, are kept.
func TestSetDefaultsKeepsSetValues(t *testing.T) {
	zero := int32(0)
	small := resource.MustParse("1Mi")
	e := &ExtenderConfiguration{TypeMeta: metav1.TypeMeta{Kind: "Other"}, Port: 1, LoadTolerance: &zero, DefaultImageSize: &small, LogLevel: "debug"}
	SetDefaults(e)
	if e.Kind != "Other" || e.APIVersion != APIVersion || e.Port != 1 || *e.LoadTolerance != 0 || e.DefaultImageSize.Cmp(small) != 0 || e.LogLevel != "debug" || e.LogFormat != "text" {
		t.Errorf("%+v", e)
	}
	k := &KubeletConfiguration{SSH: SSHConfiguration{MaxBackoff: dur(time.Minute)}, PodRetry: PodRetryConfiguration{Resync: dur(-time.Second)}}
	SetDefaults(k)
	if k.SSH.MaxBackoff.Duration != time.Minute || k.SSH.DialTimeout.Duration != 10*time.Second || k.PodRetry.Resync.Duration != -time.Second {
		t.Errorf("%+v %+v", k.SSH, k.PodRetry)
	}
}

type badDefault struct {
	metav1.TypeMeta
	Port int32 `json:"port" default:"ten"`
}

func (b *badDefault) Validate() field.ErrorList            { return nil }
func (b *badDefault) typeMeta() (*metav1.TypeMeta, string) { return &b.TypeMeta, "Bad" }

func TestMalformedDefaultPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "badDefault.Port") {
			t.Errorf("recovered %v, want a panic naming badDefault.Port", r)
		}
	}()
	SetDefaults(&badDefault{})
}
