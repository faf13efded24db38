package upstream

import (
	"errors"
	"strings"
	"testing"
)

// TestScrub: every text a CallError carries has the credential redacted,
// in any letter case and inside longer text; the error's kind survives.
func TestScrub(t *testing.T) {
	t.Parallel()
	const auth = "Bearer s3cret-TOKEN-42"
	ce := callErr("mint", ErrBadResponse, 200, "minted id %q is odd", "x-s3cret-token-42-y")
	ce.Refused = []string{"S3CRET-TOKEN-42"}
	ce.Placeholders = []string{"03-0-ERR-s3cret-TOKEN-42"}
	ce.Cause = errors.New("contents: Authorization: Bearer s3cret-TOKEN-42")
	err := scrub(ce, auth)
	if !errors.Is(err, ErrBadResponse) {
		t.Errorf("scrub lost the kind: %v", err)
	}
	text := err.Error() + strings.Join(RefusedIDs(err), " ") + strings.Join(PlaceholdersOf(err), " ")
	if strings.Contains(strings.ToLower(text), "s3cret-token-42") || strings.Count(text, "[redacted]") != 4 {
		t.Errorf("scrubbed: %s", text)
	}
	if ce.Refused[0] != "S3CRET-TOKEN-42" {
		t.Error("scrub changed the error it was given")
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"s3cret-TOKEN-42", true}, {"1.0-S3CRET-token-42", true}, {"cret-TOK", true},
		{"1.4.2", false}, {"sim-1", false}, {"42", false},
	} {
		if got := exposes(tc.s, auth); got != tc.want {
			t.Errorf("exposes(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
