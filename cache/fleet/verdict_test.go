package fleet

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestVerdictEncoding(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 19, 37, 1, 234_000_000, time.UTC)
	for _, v := range []Verdict{
		{Valid: true, Value: []byte("PEO"), FetchedAt: at},
		{Valid: false, Value: []byte("not_found"), FetchedAt: at},
		{Valid: true, FetchedAt: at},
		{Valid: true, Value: bytes.Repeat([]byte("x"), MaxValueLen), FetchedAt: at},
	} {
		b := appendVerdict(nil, v)
		got, err := decodeVerdict(b)
		if err != nil || got.Valid != v.Valid || !bytes.Equal(got.Value, v.Value) || !got.FetchedAt.Equal(v.FetchedAt) {
			t.Errorf("round trip of %+v: %+v, %v", v, got, err)
		}
	}
	// A valid ID with a three-letter entity code: 10 bytes.
	if n := len(appendVerdict(nil, Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: at})); n != 10 {
		t.Errorf("encoded size %d, want 10", n)
	}
	// Sub-millisecond parts are dropped.
	got, _ := decodeVerdict(appendVerdict(nil, Verdict{FetchedAt: at.Add(999 * time.Microsecond)}))
	if !got.FetchedAt.Equal(at) {
		t.Errorf("fetched-at %s, want %s", got.FetchedAt, at)
	}
}

func TestVerdictDecodeRejects(t *testing.T) {
	t.Parallel()
	good := appendVerdict(nil, Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now()})
	for name, b := range map[string][]byte{
		"empty":         nil,
		"one byte":      {encVersion},
		"other version": append([]byte{4 << 1}, good[1:]...),
		"bad varint":    {encVersion, 0x80, 0x80},
		"text":          []byte("garbage"),
		"value too long": append(appendVerdict(nil, Verdict{FetchedAt: time.Now()}),
			bytes.Repeat([]byte("x"), MaxValueLen+1)...),
	} {
		if _, err := decodeVerdict(b); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: %v, want ErrBadEntry", name, err)
		}
	}
}

// FuzzDecodeVerdict: decoding never panics, and whatever decodes encodes
// back to the same bytes.
func FuzzDecodeVerdict(f *testing.F) {
	f.Add(appendVerdict(nil, Verdict{Valid: true, Value: []byte("PEO"), FetchedAt: time.Now()}))
	f.Add([]byte("garbage"))
	f.Add([]byte{encVersion | encValid, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVerdict(b)
		if err != nil {
			return
		}
		if again := appendVerdict(nil, v); !bytes.Equal(again, b) && !nonMinimalVarint(b) {
			t.Errorf("%x decodes to %+v, which encodes to %x", b, v, again)
		}
	})
}

// nonMinimalVarint reports whether b's fetched-at uvarint has a redundant
// trailing zero group, which decodes but re-encodes shorter.
func nonMinimalVarint(b []byte) bool {
	for i := 1; i < len(b); i++ {
		if b[i]&0x80 == 0 {
			return i > 1 && b[i] == 0
		}
	}
	return false
}
