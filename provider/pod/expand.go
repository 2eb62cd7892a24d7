package pod

import "strings"

// expandAll applies Kubernetes' $(VAR) expansion to command or args, as the
// kubelet does (ExpandContainerCommandAndArgs) with the container's resolved
// environment; podman would pass "$(POD_NAME)" through literally.
func expandAll(in []string, env map[string]string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, env)
	}
	return out
}

// expand implements the Kubernetes expansion syntax
// (third_party/forked/golang/expansion): $(NAME) is replaced by env[NAME]
// when NAME is defined and kept verbatim otherwise; $$ is an escaped $; any
// other $ is literal.
func expand(s string, env map[string]string) string {
	return Expand(s, env)
}

// Expand is the Kubernetes expansion of s against vars (see expand), for
// the runtime's own expansions (exec probes' commands).
func Expand(s string, vars map[string]string) string {
	return expandWith(s, func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
}

// expandWith is expand with the variables looked up by lookup, for env
// values, which see the container's variables and then the service ones
// (the kubelet's expansion.MappingFuncFor over several maps).
func expandWith(s string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// An unterminated reference is literal text.
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
