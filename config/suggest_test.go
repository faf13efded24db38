package config

import "testing"

func TestSuggest(t *testing.T) {
	t.Parallel()
	known := []string{"url", "dialect", "retry", "timeout", "mintTimeout", "negativeTtl", "ttl"}
	for _, tc := range []struct{ unknown, want string }{
		{"retyr", ` (did you mean "retry"?)`},
		{"urll", ` (did you mean "url"?)`},
		{"TIMEOUT", ` (did you mean "timeout"?)`},
		{"negativeTTL", ` (did you mean "negativeTtl"?)`},
		{"tll", ` (did you mean "ttl"?)`},
		{"health", ""},
		{"ur", ""},
		{"mintTimout", ` (did you mean "mintTimeout"?)`},
	} {
		if got := suggest(tc.unknown, known); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.unknown, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"retry", "retyr", 2}, {"kitten", "sitting", 3}, {"same", "same", 0},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
