package field

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestSecretNeverPrints: every way a value reaches a log line or a
// document shows "[redacted]", never the value; Reveal gives it back.
func TestSecretNeverPrints(t *testing.T) {
	const value = "hunter2-token"
	s := Secret(value)
	holder := struct {
		Token Secret `json:"token"`
	}{s}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "token", s, "holder", holder)
	j, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", s), "%s": fmt.Sprintf("%s", s), "%+v": fmt.Sprintf("%+v", holder),
		"%#v": fmt.Sprintf("%#v", holder), "json": string(j), "slog": logged.String(),
	} {
		if strings.Contains(out, value) || !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: %q", name, out)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal: %q", s.Reveal())
	}
	if Secret("").String() != "" {
		t.Errorf("an empty secret prints %q, want nothing", Secret("").String())
	}
}

// TestRedact: the credential of a header value is replaced in any letter
// case, as often as it appears, scheme or not; a value too short to look
// for (or none) leaves the text as it is.
func TestRedact(t *testing.T) {
	for _, tc := range []struct{ text, v, want string }{
		{"auth: Bearer s3cret-TOKEN", "Bearer s3cret-TOKEN", "auth: Bearer [redacted]"},
		{"S3CRET-token=s3cret-token;", "s3cret-TOKEN", "[redacted]=[redacted];"},
		{"no secret here", "", "no secret here"},
		{"key abc in text", "abc", "key abc in text"},
	} {
		if got := Redact(tc.text, tc.v); got != tc.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tc.text, tc.v, got, tc.want)
		}
	}
}
