package sim

import (
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
)

// FuzzFormatID drives the simulator's ID generator with fuzzed counters,
// type letters and dates: every ID it writes passes the profile's Check with
// the letter in the T segment, two distinct counters below the capacity give
// distinct IDs, and the fallback placeholder is recognised as one.
func FuzzFormatID(f *testing.F) {
	f.Fuzz(func(t *testing.T, numeric bool, n, m uint64, letter uint8, unix int64) {
		format, capacity := upstream.FormatOfficial, uint64(officialCapacity)
		if numeric {
			format, capacity = upstream.FormatNumeric, uint64(numericCapacity)
		}
		entities := upstream.Entities()
		tl := entities[int(letter)%len(entities)].TypeLetter(format)
		now := time.Unix(unix, 0).UTC()
		id := formatID(format, n, tl, now)
		if err := format.Check(id); err != nil {
			t.Fatalf("formatID(%s, %d, %q, %s) = %q: %v", format, n, tl, now, id, err)
		}
		if got := format.TypeLetter(id); got != tl {
			t.Fatalf("formatID(%s, %d, %q) = %q has type letter %q", format, n, tl, id, got)
		}
		n, m = n%capacity, m%capacity
		if n != m {
			if other := formatID(format, m, tl, now); other == formatID(format, n, tl, now) {
				t.Fatalf("formatID(%s) of counters %d and %d are both %q", format, n, m, other)
			}
		}
		if format == upstream.FormatNumeric {
			if err := format.Check(fallbackID(tl, now)); err != upstream.ErrFallbackID {
				t.Fatalf("fallbackID(%q) = %q: Check = %v, want ErrFallbackID", tl, fallbackID(tl, now), err)
			}
		}
	})
}
