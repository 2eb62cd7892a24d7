package controller

import (
	"reflect"
	"testing"

	"github.com/remote-build-nodes/rbn/provider"
)

// A node answers every kubelet API route it has a handler for: a field
// left nil would answer 501 on a served node.
func TestNodeHandlersAreAllSet(t *testing.T) {
	v := reflect.ValueOf(*nodeHandlers(&provider.Pods{}))
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			t.Errorf("NodeHandlers.%s is not set", v.Type().Field(i).Name)
		}
	}
}
