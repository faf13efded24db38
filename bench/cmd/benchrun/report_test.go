package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKeptSections: a new report keeps what the old one holds from the
// marker on, and nothing above it; without a file or a marker, nothing.
func TestKeptSections(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "RESULTS.md")
	if got, err := keptSections(path); got != "" || err != nil {
		t.Fatalf("no file: %q, %v; want nothing", got, err)
	}
	if err := os.WriteFile(path, []byte("# old run\n\nfigures\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := keptSections(path); got != "" || err != nil {
		t.Fatalf("no marker: %q, %v; want nothing", got, err)
	}
	hand := keptMarker + "\n\n## An A/B run\n\nkept\n"
	if err := os.WriteFile(path, []byte("# old run\n\nfigures\n\n"+hand), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := keptSections(path); got != "\n"+hand || err != nil {
		t.Fatalf("kept %q, %v; want %q", got, err, "\n"+hand)
	}
}
