package upstream

import (
	"net/http"
	"strings"
	"time"
)

// maxRetryAfter caps a Retry-After from upstream: a wait longer than this is
// more likely a mistake (or a hostile answer) than a plan, and an app told
// to wait a day would stop minting for a day.
const maxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After header: delta-seconds or an HTTP date
// in any of the three forms HTTP allows (IMF-fixdate, RFC 850, asctime), as
// net/http reads them. It returns 0 when the header is absent, malformed or
// a date already past, and at most maxRetryAfter.
func parseRetryAfter(v []byte, now time.Time) time.Duration {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return 0
	}
	if secs, ok := deltaSeconds(s); ok {
		return min(secs, maxRetryAfter)
	}
	t, err := http.ParseTime(s)
	if err != nil || !t.After(now) {
		return 0
	}
	return min(t.Sub(now), maxRetryAfter)
}

// deltaSeconds reads a run of ASCII digits as seconds, saturating instead
// of overflowing; ok is false for anything else (a sign, a fraction).
func deltaSeconds(s string) (d time.Duration, ok bool) {
	const limit = int64(maxRetryAfter / time.Second)
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int64(c-'0'), limit+1)
	}
	return time.Duration(n) * time.Second, true
}
