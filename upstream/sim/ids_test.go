package sim

import (
	"errors"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

func TestFormatIDCheckAndUniqueness(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	for _, f := range []chittyid.Format{chittyid.FormatOfficial, chittyid.FormatNumeric} {
		t.Run(f.String(), func(t *testing.T) {
			t.Parallel()
			// Consecutive counters, plus counters around each segment's carry.
			var ns []uint64
			for n := range uint64(200_000) {
				ns = append(ns, n)
			}
			for _, step := range []uint64{9900, 10000, 9900 * 9, 10000 * 26, 9900 * 9 * 17576, 10000 * 26 * 17576, 10000 * 26 * 17576 * 26} {
				for k := uint64(1); k <= 7; k++ {
					for d := uint64(0); d < 3; d++ {
						ns = append(ns, k*step+d, k*step-1-d)
					}
				}
			}
			capacity := uint64(officialCapacity)
			if f == chittyid.FormatNumeric {
				capacity = numericCapacity
			}
			ns = append(ns, capacity-1, capacity-2)
			seen := make(map[string]uint64, len(ns))
			for _, n := range ns {
				if n >= capacity {
					continue
				}
				id := formatID(f, n, 'E', now)
				if err := f.Check(id); err != nil {
					t.Fatalf("formatID(%d) = %q: %v", n, id, err)
				}
				if id[14] != 'E' {
					t.Fatalf("formatID(%d) = %q lacks the type letter", n, id)
				}
				if prev, dup := seen[id]; dup && prev != n {
					t.Fatalf("formatID(%d) = formatID(%d) = %q", n, prev, id)
				}
				seen[id] = n
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	if numericCapacity < 9_000_000_000 || officialCapacity < 1_000_000_000_000 {
		t.Errorf("capacities %d numeric, %d official; want billions", numericCapacity, officialCapacity)
	}
	now := time.Now()
	if numericID(0, 'P', now) != numericID(numericCapacity, 'P', now) {
		t.Error("the numeric counter does not wrap at numericCapacity")
	}
}

func TestNumericIDSegments(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []uint64{0, 1, 9899, 9900, 123456789, 9_000_000_000} {
		id := numericID(n, 'P', now)
		if id[:3] != "03-" || id[3] < '1' || id[3] > '9' || id[9:11] == "00" || id[16:20] != "2603" || id[21] > '5' {
			t.Errorf("numericID(%d) = %q: want VV 03, G 1-9, SSSS ≥ 0100, YYMM 2603, C 0-5", n, id)
		}
	}
	if got := numericID(0, 'P', now); got[9:13] != "0100" {
		t.Errorf("first sequence %q, want 0100 (0000-0099 are reserved)", got[9:13])
	}
}

func TestOfficialIDNeverCD(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{0, 1 << 20, 1 << 40} {
		if id := officialID(n, 'I', time.Now()); id[:2] == "CD" {
			t.Errorf("officialID(%d) = %q starts with CD", n, id)
		}
	}
}

func TestFallbackID(t *testing.T) {
	t.Parallel()
	id := fallbackID(codeUnavailable, 'T', time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if id != "03-0-ERR-0001-T-2601-0-35" {
		t.Errorf("fallbackID = %q, want the contract's 03-0-ERR-0001-T-2601-0-35", id)
	}
	if err := chittyid.FormatNumeric.Check(id); !errors.Is(err, chittyid.ErrFallbackID) {
		t.Errorf("Check(%q) = %v, want ErrFallbackID", id, err)
	}
}

func TestMintedYYMMIsCurrent(t *testing.T) {
	t.Parallel()
	s := start(t, Config{Format: chittyid.FormatNumeric})
	before := time.Now().UTC().Format("0601")
	id := newClient(t).mint(s, "PEO")
	after := time.Now().UTC().Format("0601")
	if got := id[16:20]; got != before && got != after {
		t.Errorf("minted %q has YYMM %s, want %s", id, got, before)
	}
}

func TestWorkerEntity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		letter byte
		word   string
		ok     bool
	}{
		{"person", 'P', "person", true},
		{"P", 'P', "person", true},
		{"Place", 'L', "place", true},
		{"t", 'T', "thing", true},
		{"event", 'E', "event", true},
		{"a", 'A', "authority", true},
		{"PEO", 0, "", false},
		{"", 0, "", false},
		{"x", 0, "", false},
	} {
		e, ok := workerEntity(tc.in)
		word := e.WorkerType()
		if ok != tc.ok || word != tc.word || e.TypeLetter(chittyid.FormatNumeric) != tc.letter {
			t.Errorf("workerEntity(%q) = %v %q %v, want letter %c %q %v", tc.in, e, word, ok, tc.letter, tc.word, tc.ok)
		}
	}
}
