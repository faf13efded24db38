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
