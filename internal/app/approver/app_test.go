package approver

import (
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Setenv(EnvPodNamespace, "")
	o, _, err := parse(nil, io.Discard)
	if err != nil || o.requester != DefaultRequester || o.maxLifetime != DefaultMaxLifetime || o.namespace != DefaultNamespace {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	t.Setenv(EnvPodNamespace, "rbn-ci")
	if o, _, err := parse(nil, io.Discard); err != nil || o.namespace != "rbn-ci" {
		t.Errorf("in namespace rbn-ci: %+v, %v", o, err)
	}
	if o, _, err := parse([]string{"--namespace=rbn-dev"}, io.Discard); err != nil || o.namespace != "rbn-dev" {
		t.Errorf("--namespace=rbn-dev: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--requester="}, "--requester is required"},
		{[]string{"--namespace="}, "--namespace is required"},
		{[]string{"--max-lifetime=1m"}, "--max-lifetime 1m0s"},
		{[]string{"--log-format=xml"}, "xml"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, _, err := parse(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
