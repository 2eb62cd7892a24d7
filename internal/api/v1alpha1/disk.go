package v1alpha1

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// DiskThreshold is the bytes available below which a file system of total
// bytes is under pressure, for an AvailableBelow of availableBelow.
func DiskThreshold(availableBelow string, total uint64) (uint64, error) {
	if pct, ok := strings.CutSuffix(availableBelow, "%"); ok {
		n, err := strconv.ParseFloat(pct, 64)
		if err != nil || n < 0 || n > 100 {
			return 0, fmt.Errorf("%q: a percentage must be between 0%% and 100%%", availableBelow)
		}
		return uint64(float64(total) * n / 100), nil
	}
	q, err := resource.ParseQuantity(availableBelow)
	if err != nil {
		return 0, fmt.Errorf("%q: neither a percentage nor a quantity: %w", availableBelow, err)
	}
	if q.Sign() < 0 {
		return 0, fmt.Errorf("%q: must not be negative", availableBelow)
	}
	return uint64(q.Value()), nil
}
