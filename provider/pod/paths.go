package pod

import (
	"fmt"
	"path"
	"strings"
)

// Limits of the kubelet's atomic writer, which rbn's volume loader stands in for.
const (
	maxFilePathLength = 4096
	maxFileNameLength = 255
)

// validateFilePath checks the path of a file in a Files volume: relative,
// slash-separated, in clean form (no empty, "." or ".." segments) and not
// starting with "..", which the kubelet reserves for its atomic-writer
// bookkeeping (..data). The loader writes each file at volume root + path,
// so a path that escapes the root would write on the host.
func validateFilePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path must not be empty")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q must be relative", p)
	case len(p) > maxFilePathLength:
		return fmt.Errorf("path %q is longer than %d bytes", p, maxFilePathLength)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("path %q contains a NUL byte", p)
	case strings.HasPrefix(p, ".."):
		return fmt.Errorf("path %q must not start with \"..\"", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("path %q has an empty segment", p)
		case seg == "." || seg == "..":
			return fmt.Errorf("path %q must not contain %q", p, seg)
		case len(seg) > maxFileNameLength:
			return fmt.Errorf("path %q has a segment longer than %d bytes", p, maxFileNameLength)
		}
	}
	return nil
}

// cleanSubPath validates a volumeMount's subPath as Kubernetes does (relative,
// no ".." element) and returns it in clean form; "" means the whole volume,
// which is also what a subPath of "." names.
func cleanSubPath(sub string) (string, error) {
	if sub == "" {
		return "", nil
	}
	if strings.HasPrefix(sub, "/") {
		return "", fmt.Errorf("subPath %q must be relative", sub)
	}
	if strings.ContainsRune(sub, 0) {
		return "", fmt.Errorf("subPath %q contains a NUL byte", sub)
	}
	for _, seg := range strings.Split(sub, "/") {
		if seg == ".." {
			return "", fmt.Errorf("subPath %q must not contain \"..\"", sub)
		}
	}
	clean := path.Clean(sub)
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// HostPathAllowed reports whether the hostPath p lies at or below an entry of
// the allowlist, and returns p in clean form (what gets mounted). The check
// is on path segments, so /srv/cache2 is not below /srv/cache. It is lexical:
// symlinks on the host are the runtime's to resolve before mounting.
func HostPathAllowed(p string, allowlist []string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	clean := path.Clean(p)
	for _, entry := range allowlist {
		if !strings.HasPrefix(entry, "/") {
			continue // a relative entry would allow nothing sensible
		}
		root := path.Clean(entry)
		if clean == root || root == "/" || strings.HasPrefix(clean, root+"/") {
			return clean, true
		}
	}
	return clean, false
}

// truncateHostname keeps a hostname within the 63 bytes of a DNS label, the
// way the kubelet does (truncatePodHostnameIfNeeded): cut, then drop the
// trailing '-' and '.' the cut may leave.
func truncateHostname(h string) string {
	const maxLen = 63
	if len(h) <= maxLen {
		return h
	}
	return strings.TrimRight(h[:maxLen], "-.")
}
