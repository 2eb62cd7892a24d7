package v1alpha1

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestParseClusterServices(t *testing.T) {
	many := make([]string, MaxClusterServices+1)
	for i := range many {
		many[i] = fmt.Sprintf("s%d", i)
	}
	for _, tc := range []struct {
		name, value string
		want        []types.NamespacedName
		wantErr     string
	}{
		{name: "own namespace", value: "repo", want: []types.NamespacedName{{Namespace: "ims", Name: "repo"}}},
		{name: "qualified, spaces, order kept, duplicates dropped", value: " nexus.services , repo,nexus.services ,repo.ims",
			want: []types.NamespacedName{{Namespace: "services", Name: "nexus"}, {Namespace: "ims", Name: "repo"}}},
		{name: "empty entry", value: "repo,,other", wantErr: "an empty entry"},
		{name: "empty value", value: "", wantErr: "an empty entry"},
		{name: "name not a DNS-1035 label", value: "1repo", wantErr: `Service name "1repo"`},
		{name: "a full DNS name", value: "repo.ims.svc.cluster.local", wantErr: `namespace "ims.svc.cluster.local"`},
		{name: "upper case", value: "Repo", wantErr: `Service name "Repo"`},
		{name: "too many", value: strings.Join(many, ","), wantErr: "must have at most 254 items"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := ParseClusterServices(tc.value, "ims")
			if tc.wantErr != "" {
				if got != nil || !strings.Contains(errs.ToAggregate().Error(), tc.wantErr) {
					t.Fatalf("got %v, errors %v; want no value and an error with %q", got, errs, tc.wantErr)
				}
				if !strings.Contains(errs.ToAggregate().Error(), "metadata.annotations[rbn.dev/cluster-services]") {
					t.Errorf("errors %v do not name the annotation", errs)
				}
				return
			}
			if len(errs) > 0 || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, errs, tc.want)
			}
		})
	}
}
