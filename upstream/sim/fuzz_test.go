package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// fuzzCounter composes the counter whose ID has the given segment values
// (each taken modulo its radix), so the fuzzer can reach any segment value,
// such as a location spelling a word, by changing one small number.
func fuzzCounter(numeric bool, seq uint16, g uint8, loc uint16, c, x uint8) uint64 {
	if numeric {
		n := uint64(c) % numericCRadix
		n = n*locationRadix + uint64(loc)%locationRadix
		n = n*numericGRadix + uint64(g)%numericGRadix
		return n*numericSeqRadix + uint64(seq)%numericSeqRadix
	}
	n := uint64(x) % officialXRadix
	n = n*officialCRadix + uint64(c)%officialCRadix
	n = n*locationRadix + uint64(loc)%locationRadix
	n = n*officialGRadix + uint64(g)%officialGRadix
	return n*officialSeqRadix + uint64(seq)%officialSeqRadix
}

// FuzzFormatID drives the simulator's ID generator with fuzzed counters
// (composed from segment values), type letters and dates: every ID it
// writes passes the profile's Check with the letter in the T segment and
// never looks like a fallback placeholder; the counter m, as given (beyond
// the capacity it wraps), yields a valid ID too, and a different ID when it
// differs below the capacity; the fallback placeholder is recognised as one.
func FuzzFormatID(f *testing.F) {
	f.Fuzz(func(t *testing.T, numeric bool, seq uint16, g uint8, loc uint16, c, x uint8, m uint64, letter uint8, unix int64) {
		format, capacity := chittyid.FormatOfficial, uint64(officialCapacity)
		if numeric {
			format, capacity = chittyid.FormatNumeric, uint64(numericCapacity)
		}
		entities := chittyid.Entities()
		tl := entities[int(letter)%len(entities)].TypeLetter(format)
		now := time.Unix(unix, 0).UTC()
		n := fuzzCounter(numeric, seq, g, loc, c, x)
		id := formatID(format, n, tl, now)
		fuzzCheckID(t, format, n, tl, id)
		other := formatID(format, m, tl, now)
		fuzzCheckID(t, format, m, tl, other)
		if m%capacity != n && other == id {
			t.Fatalf("formatID(%s) of counters %d and %d are both %q", format, n, m, id)
		}
		if format == chittyid.FormatNumeric {
			for _, code := range []string{codeUnavailable, codeRejected, codeRateLimited, codeInvalidRequest, codeInternal} {
				if err := format.Check(fallbackID(code, tl, now)); err != chittyid.ErrFallbackID {
					t.Fatalf("fallbackID(%s, %q) = %q: Check = %v, want ErrFallbackID", code, tl, fallbackID(code, tl, now), err)
				}
			}
		}
	})
}

func fuzzCheckID(t *testing.T, format chittyid.Format, n uint64, tl byte, id string) {
	t.Helper()
	if err := format.Check(id); err != nil {
		t.Fatalf("formatID(%s, %d, %q) = %q: %v", format, n, tl, id, err)
	}
	// The sidecar's client refuses an error ID (region 0, location ERR,
	// sequence up to 0099) as the worker's placeholder, in either format; the
	// simulator never mints location ERR at all, so its placeholders stand out.
	if _, isErr := chittyid.FallbackCode(id); isErr || strings.Contains(id, "-ERR-") {
		t.Fatalf("formatID(%s, %d, %q) = %q, which looks like a fallback placeholder", format, n, tl, id)
	}
	if got := format.TypeLetter(id); got != tl {
		t.Fatalf("formatID(%s, %d, %q) = %q has type letter %q", format, n, tl, id, got)
	}
}
