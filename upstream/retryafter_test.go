package upstream

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
	}{
		{"absent", "", 0},
		{"blank", "   ", 0},
		{"seconds", "3", 3 * time.Second},
		{"zero", "0", 0},
		{"spaces around", " 2 ", 2 * time.Second},
		{"leading zeros", "007", 7 * time.Second},
		{"exactly an hour", "3600", time.Hour},
		{"over an hour", "3601", time.Hour},
		{"a day", "86400", time.Hour},
		{"overflowing int64", "99999999999999999999999999", time.Hour},
		{"negative", "-1", 0},
		{"plus sign", "+5", 0},
		{"fraction", "1.5", 0},
		{"word", "soon", 0},
		{"IMF-fixdate", "Wed, 25 Nov 2026 12:00:30 GMT", 30 * time.Second},
		{"RFC 850", "Wednesday, 25-Nov-26 12:01:00 GMT", time.Minute},
		{"asctime", "Wed Nov 25 12:00:45 2026", 45 * time.Second},
		{"date now", "Wed, 25 Nov 2026 12:00:00 GMT", 0},
		{"date past", "Wed, 25 Nov 2026 11:00:00 GMT", 0},
		{"date beyond an hour", "Thu, 26 Nov 2026 12:00:00 GMT", time.Hour},
		{"date not GMT", "Wed, 25 Nov 2026 12:00:30 PST", 0},
		{"date garbled", "Wed, 32 Nov 2026 12:00:30 GMT", 0},
	} {
		if got := parseRetryAfter([]byte(tc.in), now); got != tc.want {
			t.Errorf("%s: parseRetryAfter(%q) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}
