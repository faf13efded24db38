package chittyid_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

// The shapes of the two profiles, written independently of format.go's
// templates: the fuzz targets use them as the reference Check must agree with.
var (
	officialShape = regexp.MustCompile(`^[A-Z]{2}-[A-Z]-[A-Z]{3}-[0-9]{4}-[A-Z]-[0-9]{2}-[A-Z]-[0-9A-Z]$`)
	numericShape  = regexp.MustCompile(`^[0-9]{2}-[0-9]-[A-Z]{3}-[0-9]{4}-[PLTEA]-[0-9]{4}-[0-5]-[0-9]{2}$`)
	// errorIDStart is how an error (fallback) ID begins: region 0, location
	// ERR, a sequence of at most 0099 (the error code).
	errorIDStart = regexp.MustCompile(`^[0-9]{2}-0-ERR-00[0-9]{2}-`)
)

// referenceChecksum is the numeric check value computed the long way: the
// first seven segments with each letter written as its two-digit value
// (A=10 … Z=35) form one decimal number N, and the check is (98 − N mod 97)
// mod 97.
func referenceChecksum(prefix string) int {
	var digits strings.Builder
	for _, c := range []byte(prefix) {
		switch {
		case c >= '0' && c <= '9':
			digits.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			v := int(c-'A') + 10
			digits.WriteByte(byte('0' + v/10))
			digits.WriteByte(byte('0' + v%10))
		}
	}
	n, ok := new(big.Int).SetString("0"+digits.String(), 10)
	if !ok {
		panic("referenceChecksum: not a number: " + digits.String())
	}
	r := int(new(big.Int).Mod(n, big.NewInt(97)).Int64())
	return (98 - r) % 97
}

// referenceCheck is what Format.Check must answer for id, from the
// regular expressions and the big-number checksum. For numeric it is the
// worker's rule: region 1-9, except that an error ID is exactly region 0,
// location ERR and sequence <= 0099; any other region-0 ID is malformed.
func referenceCheck(f chittyid.Format, id string) error {
	switch f {
	case chittyid.FormatOfficial:
		if !officialShape.MatchString(id) || strings.HasPrefix(id, "CD-") {
			return chittyid.ErrIDFormat
		}
		return nil
	case chittyid.FormatNumeric:
		if !numericShape.MatchString(id) {
			return chittyid.ErrIDFormat
		}
		errorID := id[3] == '0'
		if errorID && !errorIDStart.MatchString(id) {
			return chittyid.ErrIDFormat
		}
		if referenceChecksum(id[:22]) != int(id[23]-'0')*10+int(id[24]-'0') {
			return chittyid.ErrIDChecksum
		}
		if errorID {
			return chittyid.ErrFallbackID
		}
		return nil
	}
	return chittyid.ErrIDFormat
}

// FuzzFormatCheck checks Format.Check (and CheckBytes) of both profiles (and an unset one)
// against the reference: it never panics, answers only its sentinels, and a
// nil error implies the exact shape (and for numeric the checksum and no
// fallback marker). The contract's vectors are in testdata/fuzz; the seeds
// added here are IDs minted by running simulators of both profiles, which
// must pass.
func FuzzFormatCheck(f *testing.F) {
	for _, format := range []chittyid.Format{chittyid.FormatOfficial, chittyid.FormatNumeric} {
		for _, id := range mintedBySim(f, format) {
			if err := format.Check(id); err != nil {
				f.Fatalf("the %s simulator minted %q, which Check rejects: %v", format, id, err)
			}
			f.Add(id)
		}
	}
	f.Fuzz(func(t *testing.T, id string) {
		for _, format := range []chittyid.Format{chittyid.FormatOfficial, chittyid.FormatNumeric, 0, 3} {
			got, want := format.Check(id), referenceCheck(format, id)
			if got != want { // sentinels: compared by identity, not errors.Is
				t.Fatalf("%v.Check(%q) = %v, want %v", format, id, got, want)
			}
			if b := format.CheckBytes([]byte(id)); b != got {
				t.Fatalf("%v.CheckBytes(%q) = %v, but Check says %v", format, id, b, got)
			}
			code, isErr := chittyid.FallbackCode(id)
			if wantErr := errorIDStart.MatchString(id) && len(id) == 25; isErr != wantErr {
				t.Fatalf("FallbackCode(%q) = %d, %v; want ok %v", id, code, isErr, wantErr)
			} else if isErr && fmt.Sprintf("%04d", code) != id[9:13] {
				t.Fatalf("FallbackCode(%q) = %d, want the sequence %s", id, code, id[9:13])
			}
			if got == chittyid.ErrFallbackID && !isErr {
				t.Fatalf("%v.Check(%q) = %v but FallbackCode says it is not an error ID", format, id, got)
			}
			if got == nil || errors.Is(got, chittyid.ErrFallbackID) {
				if l := format.TypeLetter(id); l != id[14] {
					t.Fatalf("%v.TypeLetter(%q) = %q, want %q", format, id, l, id[14])
				}
			} else if l := format.TypeLetter(id); l != 0 {
				t.Fatalf("%v.TypeLetter(%q) = %q for a rejected ID, want 0", format, id, l)
			}
		}
		// The reference's big number grows with the input: keep minimization
		// of long inputs fast; IDs are 25 bytes.
		if len(id) <= 256 {
			if got, want := chittyid.NumericChecksum(id), referenceChecksum(id); got != want {
				t.Fatalf("NumericChecksum(%q) = %d, want %d", id, got, want)
			}
		}
	})
}

// FuzzNumericChecksumSingleChange builds a valid numeric ID from fuzzed
// segment values (its checksum from the reference, not NumericChecksum),
// checks it passes, then checks that every change of one byte, to any of the
// 256 values, is rejected.
func FuzzNumericChecksumSingleChange(f *testing.F) {
	f.Add(uint8(3), uint8(1), "USA", uint16(1), uint8('P'), uint16(2601), uint8(3))
	f.Add(uint8(3), uint8(1), "USA", uint16(1234), uint8('P'), uint16(2601), uint8(3))
	f.Add(uint8(3), uint8(9), "GBR", uint16(42), uint8('E'), uint16(2512), uint8(5))
	f.Add(uint8(99), uint8(9), "ZZZ", uint16(9999), uint8('A'), uint16(9999), uint8(5))
	f.Add(uint8(0), uint8(1), "AAA", uint16(0), uint8('L'), uint16(0), uint8(0))
	f.Add(uint8(3), uint8(0), "ERR", uint16(1234), uint8('P'), uint16(2612), uint8(3)) // ERR with region 1 is real
	f.Add(uint8(3), uint8(8), "ERR", uint16(7), uint8('T'), uint16(2601), uint8(0))
	f.Fuzz(func(t *testing.T, vv, g uint8, lll string, seq uint16, tl uint8, yymm uint16, c uint8) {
		id := numericFrom(vv, g, lll, seq, tl, yymm, c)
		if err := chittyid.FormatNumeric.Check(id); err != nil {
			t.Fatalf("Check(%q) = %v for a valid ID", id, err)
		}
		b := []byte(id)
		for i := range b {
			orig := b[i]
			for v := 0; v < 256; v++ {
				if byte(v) == orig {
					continue
				}
				b[i] = byte(v)
				if err := chittyid.FormatNumeric.Check(string(b)); err == nil {
					t.Fatalf("%q with byte %d changed from %q to %q still passes", id, i, orig, byte(v))
				}
			}
			b[i] = orig
		}
	})
}

// numericFrom maps arbitrary segment values onto a valid, non-fallback
// numeric ID (region 1-9; any location, ERR included).
func numericFrom(vv, g uint8, lll string, seq uint16, tl uint8, yymm uint16, c uint8) string {
	loc := []byte("AAA")
	for i := 0; i < len(lll) && i < 3; i++ {
		loc[i] = 'A' + (lll[i]-'A')%26
	}
	letters := "PLTEA"
	var b strings.Builder
	b.WriteString(pad(int(vv)%100, 2) + "-")
	b.WriteByte('1' + g%9)
	b.WriteString("-" + string(loc) + "-" + pad(int(seq)%10000, 4) + "-")
	b.WriteByte(letters[int(tl)%len(letters)])
	b.WriteString("-" + pad(int(yymm)%10000, 4) + "-")
	b.WriteByte('0' + c%6)
	prefix := b.String()
	return prefix + "-" + pad(referenceChecksum(prefix), 2)
}

func pad(v, width int) string { return fmt.Sprintf("%0*d", width, v) }

// mintedBySim mints a few IDs of every entity, single and batch, from a
// running simulator of the format.
func mintedBySim(f *testing.F, format chittyid.Format) []string {
	f.Helper()
	const tok = "fuzz-seed-token"
	s, err := sim.Start(sim.Config{Format: format, Token: tok}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	cfg := upstream.Defaults()
	cfg.URL, cfg.Token = s.URL(), tok
	c, err := upstream.New(cfg, format, upstream.NewBreaker(cfg.Breaker, nil), upstream.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var batch []upstream.MintRequest
	for _, e := range chittyid.Entities() {
		if _, err := c.Mint(ctx, upstream.MintRequest{Entity: e}, "", upstream.CallInfo{}); err != nil {
			f.Fatalf("minting %v from the %s simulator: %v", e, format, err)
		}
		batch = append(batch, upstream.MintRequest{Entity: e})
	}
	if _, err := c.MintBatch(ctx, batch, "", upstream.CallInfo{}); err != nil {
		f.Fatalf("batch mint from the %s simulator: %v", format, err)
	}
	return s.Minted()
}
