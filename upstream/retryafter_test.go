package upstream

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 2 ", 2 * time.Second},
		{"-1", 0},
		{"soon", 0},
		{"Wed, 25 Nov 2026 12:00:30 GMT", 30 * time.Second},
		{"Wed, 25 Nov 2026 11:00:00 GMT", 0},
	} {
		if got := parseRetryAfter([]byte(tc.in), now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
