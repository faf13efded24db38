package chittyid_test

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// boundaryFile is the table of numeric boundary IDs and their verdicts; the
// sidecar's tests read it too.
const boundaryFile = "testdata/numeric-boundary-ids.txt"

// boundaryVerdicts maps the table's verdict words to Check's answers.
var boundaryVerdicts = map[string]error{
	"valid":    nil,
	"format":   chittyid.ErrIDFormat,
	"checksum": chittyid.ErrIDChecksum,
	"fallback": chittyid.ErrFallbackID,
}

type boundaryRow struct {
	verdict, id, what string
}

func readBoundaryIDs(t *testing.T) []boundaryRow {
	t.Helper()
	f, err := os.Open(boundaryFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []boundaryRow
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if _, ok := boundaryVerdicts[fields[0]]; !ok || len(fields) < 3 {
			t.Fatalf("%s:%d: want a verdict, an ID and what it tests: %q", boundaryFile, n, line)
		}
		rows = append(rows, boundaryRow{fields[0], fields[1], strings.Join(fields[2:], " ")})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestNumericBoundaryIDs checks the numeric profile's Check against the table
// of boundary IDs (region 0 with and without ERR, ERR with region 1-9,
// sequence 0099/0100 in error IDs, each segment's edges): Check's verdict is
// the table's, and so is the verdict of the worker's rules as the contract
// states them (referenceCheck: regular expressions and the big-number
// checksum), so the table itself is checked too. CheckBytes and
// FallbackCode agree.
func TestNumericBoundaryIDs(t *testing.T) {
	t.Parallel()
	rows := readBoundaryIDs(t)
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.verdict] = true
		want := boundaryVerdicts[r.verdict]
		if got := chittyid.FormatNumeric.Check(r.id); got != want {
			t.Errorf("Check(%q) = %v, want %v (%s)", r.id, got, want, r.what)
		}
		if got := chittyid.FormatNumeric.CheckBytes([]byte(r.id)); got != want {
			t.Errorf("CheckBytes(%q) = %v, want %v (%s)", r.id, got, want, r.what)
		}
		if ref := referenceCheck(chittyid.FormatNumeric, r.id); ref != want {
			t.Errorf("the table says %s for %q (%s), the contract's rules say %v", r.verdict, r.id, r.what, ref)
		}
		if _, isErr := chittyid.FallbackCode(r.id); r.verdict == "fallback" && !isErr {
			t.Errorf("FallbackCode(%q): not an error ID, but Check says fallback", r.id)
		} else if isErr && r.verdict == "valid" {
			t.Errorf("FallbackCode(%q) calls a valid ID an error ID", r.id)
		}
	}
	for v := range boundaryVerdicts {
		if !seen[v] {
			t.Errorf("the table has no %q row", v)
		}
	}
}

func TestFallbackCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   string
		code int
		ok   bool
	}{
		{"03-0-ERR-0001-T-2601-0-35", 1, true},
		{"03-0-ERR-0007-L-2612-0-92", 7, true},
		{"03-0-ERR-0099-T-2601-0-56", 99, true},
		{"03-0-ERR-0000-T-2601-0-14", 0, true},
		{"03-0-ERR-0008-A-2612-0-00", 8, true},  // wrong checksum: still a placeholder
		{"03-0-ERR-0003-X-2612-9-00", 3, true},  // damaged past the sequence
		{"03-0-ERR-0100-T-2601-0-77", 0, false}, // sequence beyond the error codes
		{"03-1-ERR-0001-T-2601-0-00", 0, false}, // region 1: a real ID
		{"03-0-USA-0001-P-2601-3-33", 0, false},
		{"03-0-ERR-0001", 0, false},
		{"", 0, false},
	} {
		if code, ok := chittyid.FallbackCode(tc.id); code != tc.code || ok != tc.ok {
			t.Errorf("FallbackCode(%q) = %d, %v; want %d, %v", tc.id, code, ok, tc.code, tc.ok)
		}
	}
}
