package config

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The configurations the manifests ship decode strictly, with the values
// they state.
func TestManifestsConfigurationsDecode(t *testing.T) {
	for _, tc := range []struct {
		file  string
		obj   Object
		check func(Object) bool
	}{
		{"../../manifests/kubelet/deployment.yaml", &KubeletConfiguration{}, func(o Object) bool {
			c := o.(*KubeletConfiguration)
			return c.KubeletPortRange == "10251-10450" && c.LogFormat == "json" && c.KubeletPort == 10250
		}},
		{"../../manifests/extender/deployment.yaml", &ExtenderConfiguration{}, func(o Object) bool {
			c := o.(*ExtenderConfiguration)
			return c.Port == 10262 && *c.LoadTolerance == 2 && c.DefaultImageSize.IsZero() && c.LogFormat == "json"
		}},
	} {
		data, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for doc := range strings.SplitSeq(string(data), "\n---\n") {
			var cm struct {
				Kind string            `json:"kind"`
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatalf("%s: %v", tc.file, err)
			}
			if cm.Kind != "ConfigMap" || cm.Data["config.yaml"] == "" {
				continue
			}
			found = true
			if err := Decode([]byte(cm.Data["config.yaml"]), tc.obj); err != nil {
				t.Errorf("%s: %v", tc.file, err)
			} else if !tc.check(tc.obj) {
				t.Errorf("%s: decoded %+v", tc.file, tc.obj)
			}
		}
		if !found {
			t.Errorf("%s: no ConfigMap with a config.yaml", tc.file)
		}
	}
}
